//! Single values (ids, filter operands, update operands) to and from BSON.
//!
//! `bson::to_bson` and `bson::from_bson` take an `ObjectId` through its extended-JSON form: a
//! 24-character hex string, written and parsed again, about 4,000 instructions per id, more
//! than the rest of a `find_by_id` adds to the driver's own work. The types that filters and ids
//! use most are converted here directly; every other type goes through serde as before, with
//! the same result.

use std::any::Any;

use mongodb::bson::oid::ObjectId;
use mongodb::bson::{self, Bson, DateTime};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// `value` as BSON, exactly as `bson::to_bson` makes it.
pub(crate) fn to_bson<T: Serialize + 'static>(value: &T) -> bson::ser::Result<Bson> {
    let any = value as &dyn Any;
    if let Some(id) = any.downcast_ref::<ObjectId>() {
        return Ok(Bson::ObjectId(*id));
    }
    if let Some(text) = any.downcast_ref::<String>() {
        return Ok(Bson::String(text.clone()));
    }
    if let Some(n) = any.downcast_ref::<i64>() {
        return Ok(Bson::Int64(*n));
    }
    if let Some(n) = any.downcast_ref::<i32>() {
        return Ok(Bson::Int32(*n));
    }
    if let Some(x) = any.downcast_ref::<f64>() {
        return Ok(Bson::Double(*x));
    }
    if let Some(b) = any.downcast_ref::<bool>() {
        return Ok(Bson::Boolean(*b));
    }
    if let Some(at) = any.downcast_ref::<DateTime>() {
        return Ok(Bson::DateTime(*at));
    }
    // The id field of most models (`Option<ObjectId>`, `None` before the insert).
    if let Some(id) = any.downcast_ref::<Option<ObjectId>>() {
        return Ok(id.map_or(Bson::Null, Bson::ObjectId));
    }
    bson::to_bson(value)
}

/// `value` as a `T`, exactly as `bson::from_bson` reads it.
pub(crate) fn from_bson<T: DeserializeOwned + 'static>(value: Bson) -> bson::de::Result<T> {
    let mut out: Option<T> = None;
    let slot = &mut out as &mut dyn Any;
    match &value {
        Bson::ObjectId(id) => {
            if let Some(slot) = slot.downcast_mut::<Option<ObjectId>>() {
                *slot = Some(*id);
            }
        }
        Bson::String(text) => {
            if let Some(slot) = slot.downcast_mut::<Option<String>>() {
                *slot = Some(text.clone());
            }
        }
        Bson::Int64(n) => {
            if let Some(slot) = slot.downcast_mut::<Option<i64>>() {
                *slot = Some(*n);
            }
        }
        Bson::Int32(n) => {
            if let Some(slot) = slot.downcast_mut::<Option<i32>>() {
                *slot = Some(*n);
            }
        }
        _ => {}
    }
    match out {
        Some(found) => Ok(found),
        None => bson::from_bson(value),
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;
    use serde::Deserialize;

    use super::*;

    fn same_as_serde<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug + 'static>(
        value: T,
    ) {
        let fast = to_bson(&value).unwrap();
        assert_eq!(fast, bson::to_bson(&value).unwrap());
        let back: T = from_bson(fast.clone()).unwrap();
        assert_eq!(back, bson::from_bson::<T>(fast).unwrap());
        assert_eq!(back, value);
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Key {
        tenant: String,
        n: u32,
    }

    #[test]
    fn the_direct_conversions_agree_with_serde() {
        same_as_serde(ObjectId::new());
        same_as_serde("a $-string".to_owned());
        same_as_serde(i64::MIN);
        same_as_serde(-7_i32);
        same_as_serde(2.5_f64);
        same_as_serde(true);
        same_as_serde(DateTime::from_millis(1_700_000_000_123));
        // Types without a direct conversion take serde's route.
        same_as_serde(7_u32);
        same_as_serde(Key {
            tenant: "t".into(),
            n: 3,
        });
        same_as_serde(Some(ObjectId::new()));
        same_as_serde(None::<ObjectId>);
    }

    #[test]
    fn a_mismatched_value_is_serdes_error() {
        // A stored id of another type than the model's: serde's message, not a silent default.
        let error = from_bson::<ObjectId>(Bson::String("not an id".into())).unwrap_err();
        assert_eq!(
            error.to_string(),
            bson::from_bson::<ObjectId>(Bson::String("not an id".into()))
                .unwrap_err()
                .to_string()
        );
        assert!(from_bson::<i64>(Bson::Document(doc! {})).is_err());
        // Serde widens an Int32 to i64: so does the direct route (it falls back to serde).
        assert_eq!(from_bson::<i64>(Bson::Int32(4)).unwrap(), 4);
    }
}
