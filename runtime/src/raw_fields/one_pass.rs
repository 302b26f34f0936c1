//! mongrove's fields written while the model is serialized, so that a write's bytes are made in
//! one pass with no buffer to patch or copy afterwards.
//!
//! [`WithFields`] wraps a model for bson's raw serializer: when the model serializes as a
//! struct (what `#[derive(Serialize)]` makes), a made `_id` goes first, each of mongrove's
//! fields replaces the model's value of that key where it stands, and the ones the model does
//! not write are appended. Anything else (a map from `#[serde(flatten)]`, a key written twice,
//! a non-null `_id` when one was made) is an error here, and the caller takes the other path,
//! which gives the same bytes or says what is wrong.

use mongodb::bson::oid::ObjectId;
use mongodb::bson::{RawBsonRef, RawDocumentBuf};
use serde::ser::{Error as _, Impossible, SerializeStruct};
use serde::{Serialize, Serializer};

/// At most this many fields to set in one pass; more take the other path.
pub(super) const MOST: usize = 4;

/// What the made `_id` is written as, to be overwritten by [`with_made_id`]: a string of 7
/// bytes takes the 12 bytes of an `ObjectId` (length, text, NUL). bson's serializer would
/// take an `ObjectId` through its hex text and back.
const ID_PLACEHOLDER: &str = "0000000";

/// `value`'s bytes with mongrove's fields, in one pass; `None` when it takes the other path.
pub(super) fn encode<T: Serialize + ?Sized>(
    value: &T,
    id: Option<ObjectId>,
    set: &[(&'static str, RawBsonRef<'_>)],
) -> Option<RawDocumentBuf> {
    let mut bytes = mongodb::bson::to_vec(&WithFields { value, id, set }).ok()?;
    if let Some(id) = id {
        with_made_id(&mut bytes, id)?;
    }
    RawDocumentBuf::from_bytes(bytes).ok()
}

/// The bytes [`WithFields`] made, with the made `_id` written over its placeholder; `None` if
/// they do not start with it.
fn with_made_id(bytes: &mut [u8], id: ObjectId) -> Option<()> {
    // Type, key, NUL; the string's length (its text and NUL); the text; its NUL.
    let placeholder = bytes.get_mut(4..4 + 1 + 4 + 4 + ID_PLACEHOLDER.len() + 1)?;
    let (head, value) = placeholder.split_at_mut(5);
    if head != b"\x02_id\0"
        || value[..4] != 8_i32.to_le_bytes()
        || &value[4..11] != ID_PLACEHOLDER.as_bytes()
    {
        return None;
    }
    head[0] = 0x07;
    value.copy_from_slice(&id.bytes());
    Some(())
}

/// A model and the fields mongrove writes into it.
struct WithFields<'a, T: ?Sized> {
    value: &'a T,
    /// Written first; the model's own `_id` must then be absent or null.
    id: Option<ObjectId>,
    set: &'a [(&'static str, RawBsonRef<'a>)],
}

impl<T: Serialize + ?Sized> Serialize for WithFields<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.set.len() > MOST {
            return Err(S::Error::custom("too many fields for one pass"));
        }
        self.value.serialize(Top {
            inner: serializer,
            id: self.id,
            set: self.set,
        })
    }
}

/// The serializer the model sees at the top: it takes a struct, and nothing else.
struct Top<'a, S> {
    inner: S,
    id: Option<ObjectId>,
    set: &'a [(&'static str, RawBsonRef<'a>)],
}

/// The model's struct, with mongrove's fields written in as its fields go by.
struct Fields<'a, S> {
    inner: S,
    made_id: bool,
    set: &'a [(&'static str, RawBsonRef<'a>)],
    written: [bool; MOST],
}

fn not_a_struct<E: serde::ser::Error>() -> E {
    E::custom("the model does not serialize as a struct")
}

/// The methods for every shape other than a struct: each one sends the caller the other way.
macro_rules! refuse {
    ($($method:ident($($arg:ty),*) -> $ret:ty;)*) => {
        $(fn $method(self, $(_: $arg),*) -> Result<$ret, Self::Error> {
            Err(not_a_struct())
        })*
    };
}

impl<'a, S: Serializer> Serializer for Top<'a, S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Impossible<S::Ok, S::Error>;
    type SerializeTuple = Impossible<S::Ok, S::Error>;
    type SerializeTupleStruct = Impossible<S::Ok, S::Error>;
    type SerializeTupleVariant = Impossible<S::Ok, S::Error>;
    type SerializeMap = Impossible<S::Ok, S::Error>;
    type SerializeStruct = Fields<'a, S::SerializeStruct>;
    type SerializeStructVariant = Impossible<S::Ok, S::Error>;

    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        let mut inner = self
            .inner
            .serialize_struct(name, len + 1 + self.set.len())?;
        if self.id.is_some() {
            inner.serialize_field("_id", ID_PLACEHOLDER)?;
        }
        Ok(Fields {
            inner,
            made_id: self.id.is_some(),
            set: self.set,
            written: [false; MOST],
        })
    }

    /// `#[serde(transparent)]` and newtype models: the struct inside.
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        value.serialize(self)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<S::Ok, S::Error> {
        Err(not_a_struct())
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<S::Ok, S::Error> {
        Err(not_a_struct())
    }

    refuse! {
        serialize_bool(bool) -> S::Ok;
        serialize_i8(i8) -> S::Ok;
        serialize_i16(i16) -> S::Ok;
        serialize_i32(i32) -> S::Ok;
        serialize_i64(i64) -> S::Ok;
        serialize_u8(u8) -> S::Ok;
        serialize_u16(u16) -> S::Ok;
        serialize_u32(u32) -> S::Ok;
        serialize_u64(u64) -> S::Ok;
        serialize_f32(f32) -> S::Ok;
        serialize_f64(f64) -> S::Ok;
        serialize_char(char) -> S::Ok;
        serialize_str(&str) -> S::Ok;
        serialize_bytes(&[u8]) -> S::Ok;
        serialize_none() -> S::Ok;
        serialize_unit() -> S::Ok;
        serialize_unit_struct(&'static str) -> S::Ok;
        serialize_unit_variant(&'static str, u32, &'static str) -> S::Ok;
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant;
        serialize_map(Option<usize>) -> Self::SerializeMap;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant;
    }
}

impl<S: SerializeStruct> SerializeStruct for Fields<'_, S> {
    type Ok = S::Ok;
    type Error = S::Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), S::Error> {
        if key == "_id" {
            // A `None` id is dropped: it would be stored as a real `_id: null`.
            return match (value.serialize(IsNull), self.made_id) {
                (Ok(true), _) => Ok(()),
                (_, false) => self.inner.serialize_field(key, value),
                (_, true) => Err(S::Error::custom(
                    "an `_id` of the model's own and a made one",
                )),
            };
        }
        match self.set.iter().position(|(k, _)| *k == key) {
            Some(i) if !self.written[i] => {
                self.written[i] = true;
                self.inner.serialize_field(key, &self.set[i].1)
            }
            Some(_) => Err(S::Error::custom("a key of mongrove's written twice")),
            None => self.inner.serialize_field(key, value),
        }
    }

    fn skip_field(&mut self, key: &'static str) -> Result<(), S::Error> {
        self.inner.skip_field(key)
    }

    fn end(mut self) -> Result<S::Ok, S::Error> {
        for (i, (key, value)) in self.set.iter().enumerate() {
            if !self.written[i] {
                self.inner.serialize_field(key, value)?;
            }
        }
        self.inner.end()
    }
}

/// Whether a value serializes as null (`None` or unit); anything else is `false`, or an error
/// that means the same to its caller.
struct IsNull;

/// An error [`IsNull`] never needs to describe.
#[derive(Debug)]
struct NotNull;

impl std::fmt::Display for NotNull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not null")
    }
}

impl std::error::Error for NotNull {}

impl serde::ser::Error for NotNull {
    fn custom<T: std::fmt::Display>(_msg: T) -> Self {
        NotNull
    }
}

macro_rules! not_null {
    ($($method:ident($($arg:ty),*) -> $ret:ty;)*) => {
        $(fn $method(self, $(_: $arg),*) -> Result<$ret, NotNull> {
            Err(NotNull)
        })*
    };
}

impl Serializer for IsNull {
    type Ok = bool;
    type Error = NotNull;
    type SerializeSeq = Impossible<bool, NotNull>;
    type SerializeTuple = Impossible<bool, NotNull>;
    type SerializeTupleStruct = Impossible<bool, NotNull>;
    type SerializeTupleVariant = Impossible<bool, NotNull>;
    type SerializeMap = Impossible<bool, NotNull>;
    type SerializeStruct = Impossible<bool, NotNull>;
    type SerializeStructVariant = Impossible<bool, NotNull>;

    fn serialize_none(self) -> Result<bool, NotNull> {
        Ok(true)
    }

    fn serialize_unit(self) -> Result<bool, NotNull> {
        Ok(true)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<bool, NotNull> {
        Ok(false)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<bool, NotNull> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<bool, NotNull> {
        Err(NotNull)
    }

    not_null! {
        serialize_bool(bool) -> bool;
        serialize_i8(i8) -> bool;
        serialize_i16(i16) -> bool;
        serialize_i32(i32) -> bool;
        serialize_i64(i64) -> bool;
        serialize_u8(u8) -> bool;
        serialize_u16(u16) -> bool;
        serialize_u32(u32) -> bool;
        serialize_u64(u64) -> bool;
        serialize_f32(f32) -> bool;
        serialize_f64(f64) -> bool;
        serialize_char(char) -> bool;
        serialize_str(&str) -> bool;
        serialize_bytes(&[u8]) -> bool;
        serialize_unit_struct(&'static str) -> bool;
        serialize_unit_variant(&'static str, u32, &'static str) -> bool;
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant;
        serialize_map(Option<usize>) -> Self::SerializeMap;
        serialize_struct(&'static str, usize) -> Self::SerializeStruct;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant;
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::rawdoc;

    use super::*;

    #[test]
    fn the_made_id_goes_only_over_its_placeholder() {
        let id = ObjectId::new();
        let mut bytes = rawdoc! { "_id": ID_PLACEHOLDER, "a": 1 }.into_bytes();
        assert_eq!(with_made_id(&mut bytes, id), Some(()));
        let written = RawDocumentBuf::from_bytes(bytes).unwrap();
        assert_eq!(written, rawdoc! { "_id": id, "a": 1 });
        for other in [
            rawdoc! { "_id": "0000001", "a": 1 },
            rawdoc! { "id_": ID_PLACEHOLDER },
            rawdoc! { "a": 1, "_id": ID_PLACEHOLDER },
            rawdoc! { "_id": "000000" },
            rawdoc! {},
        ] {
            let mut bytes = other.clone().into_bytes();
            assert_eq!(with_made_id(&mut bytes, id), None, "{other:?}");
            assert_eq!(bytes, other.into_bytes());
        }
    }
}
