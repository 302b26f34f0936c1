//! The declarative field rules of `#[model(validate(...))]`, checked before insert and save.

use crate::error::FieldFailure;

/// Values `range(min = .., max = ..)` applies to: numbers, and `Option`s of them (`None` passes).
#[diagnostic::on_unimplemented(
    message = "`range` applies to numbers, not to `{Self}`",
    note = "use `length(...)` for strings and vectors, or `custom = path::to_fn` for other types"
)]
pub trait RangeValue {
    /// The value as a float, or `None` when there is nothing to check.
    fn range_value(&self) -> Option<f64>;
}

macro_rules! range_value {
    ($($ty:ty),*) => {$(
        impl RangeValue for $ty {
            #[allow(clippy::cast_lossless, clippy::cast_precision_loss)]
            fn range_value(&self) -> Option<f64> {
                Some(*self as f64)
            }
        }
    )*};
}
range_value!(i8, i16, i32, i64, u8, u16, u32, u64, f32, f64, isize, usize);

impl<T: RangeValue> RangeValue for Option<T> {
    fn range_value(&self) -> Option<f64> {
        self.as_ref().and_then(RangeValue::range_value)
    }
}

/// Values `length(..)` and `non_empty` apply to: strings (in characters) and collections.
#[diagnostic::on_unimplemented(
    message = "`length` and `non_empty` apply to strings and vectors, not to `{Self}`",
    note = "use `range(...)` for numbers, or `custom = path::to_fn` for other types"
)]
pub trait LengthValue {
    /// The length, or `None` for an absent `Option` (which `length` lets pass).
    fn length(&self) -> Option<usize>;
}

impl LengthValue for String {
    fn length(&self) -> Option<usize> {
        Some(self.chars().count())
    }
}

impl<T> LengthValue for Vec<T> {
    fn length(&self) -> Option<usize> {
        Some(self.len())
    }
}

impl<T: LengthValue> LengthValue for Option<T> {
    fn length(&self) -> Option<usize> {
        self.as_ref().and_then(LengthValue::length)
    }
}

/// Values `pattern = ".."` applies to: strings and `Option<String>` (`None` passes).
#[diagnostic::on_unimplemented(
    message = "`pattern` applies to strings, not to `{Self}`",
    note = "use `custom = path::to_fn` for other types"
)]
pub trait PatternValue {
    /// The text to match.
    fn text(&self) -> Option<&str>;
}

impl PatternValue for String {
    fn text(&self) -> Option<&str> {
        Some(self)
    }
}

impl PatternValue for Option<String> {
    fn text(&self) -> Option<&str> {
        self.as_deref()
    }
}

fn failure(field: &str, rule: String, message: String) -> FieldFailure {
    FieldFailure {
        field: field.to_owned(),
        rule,
        message,
    }
}

#[doc(hidden)]
pub fn check_range(
    failures: &mut Vec<FieldFailure>,
    field: &str,
    value: &impl RangeValue,
    min: Option<f64>,
    max: Option<f64>,
) {
    let Some(value) = value.range_value() else {
        return;
    };
    let rule = match (min, max) {
        (Some(min), Some(max)) => format!("range(min = {min}, max = {max})"),
        (Some(min), None) => format!("range(min = {min})"),
        (None, Some(max)) => format!("range(max = {max})"),
        (None, None) => return,
    };
    if min.is_some_and(|min| value < min) {
        failures.push(failure(
            field,
            rule,
            format!("is {value}, below the minimum"),
        ));
    } else if max.is_some_and(|max| value > max) {
        failures.push(failure(
            field,
            rule,
            format!("is {value}, above the maximum"),
        ));
    } else if value.is_nan() {
        failures.push(failure(field, rule, "is not a number".to_owned()));
    }
}

#[doc(hidden)]
pub fn check_length(
    failures: &mut Vec<FieldFailure>,
    field: &str,
    value: &impl LengthValue,
    min: Option<usize>,
    max: Option<usize>,
) {
    let Some(length) = value.length() else { return };
    let rule = match (min, max) {
        (Some(min), Some(max)) => format!("length(min = {min}, max = {max})"),
        (Some(min), None) => format!("length(min = {min})"),
        (None, Some(max)) => format!("length(max = {max})"),
        (None, None) => return,
    };
    if min.is_some_and(|min| length < min) {
        failures.push(failure(
            field,
            rule,
            format!("has length {length}, below the minimum"),
        ));
    } else if max.is_some_and(|max| length > max) {
        failures.push(failure(
            field,
            rule,
            format!("has length {length}, above the maximum"),
        ));
    }
}

#[doc(hidden)]
pub fn check_non_empty(failures: &mut Vec<FieldFailure>, field: &str, value: &impl LengthValue) {
    if value.length().unwrap_or(0) == 0 {
        failures.push(failure(
            field,
            "non_empty".to_owned(),
            "is empty".to_owned(),
        ));
    }
}

#[doc(hidden)]
pub fn check_pattern(
    failures: &mut Vec<FieldFailure>,
    field: &str,
    value: &impl PatternValue,
    regex: &regex_lite::Regex,
) {
    let Some(text) = value.text() else { return };
    if !regex.is_match(text) {
        failures.push(failure(
            field,
            format!("pattern = {:?}", regex.as_str()),
            "does not match the pattern".to_owned(),
        ));
    }
}

#[doc(hidden)]
pub fn check_custom<T: ?Sized>(
    failures: &mut Vec<FieldFailure>,
    field: &str,
    value: &T,
    name: &str,
    check: fn(&T) -> Result<(), String>,
) {
    if let Err(message) = check(value) {
        failures.push(failure(field, format!("custom = {name}"), message));
    }
}

/// A pattern compiled once per process. The derive has already checked that it compiles.
#[doc(hidden)]
pub fn compiled(
    cell: &'static std::sync::OnceLock<Option<regex_lite::Regex>>,
    pattern: &str,
) -> Option<&'static regex_lite::Regex> {
    cell.get_or_init(|| regex_lite::Regex::new(pattern).ok())
        .as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_reports_its_failure() {
        let mut failures = Vec::new();
        check_range(&mut failures, "age", &-1_i32, Some(0.0), Some(150.0));
        check_range(&mut failures, "age", &Some(20_i64), Some(0.0), Some(150.0));
        check_range(&mut failures, "score", &None::<f64>, Some(0.0), None);
        check_length(&mut failures, "name", &"é".to_owned(), Some(2), None);
        check_length(&mut failures, "tags", &vec![1, 2, 3], None, Some(2));
        check_non_empty(&mut failures, "title", &String::new());
        check_non_empty(&mut failures, "nick", &None::<String>);
        let re = regex_lite::Regex::new("^[a-z]+$").unwrap();
        check_pattern(&mut failures, "slug", &"Hello".to_owned(), &re);
        check_pattern(&mut failures, "slug", &"hello".to_owned(), &re);
        check_custom(&mut failures, "even", &3, "is_even", |n: &i32| {
            if n % 2 == 0 {
                Ok(())
            } else {
                Err("is odd".into())
            }
        });
        let fields: Vec<(&str, &str)> = failures
            .iter()
            .map(|f| (f.field.as_str(), f.rule.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                ("age", "range(min = 0, max = 150)"),
                ("name", "length(min = 2)"),
                ("tags", "length(max = 2)"),
                ("title", "non_empty"),
                ("nick", "non_empty"),
                ("slug", "pattern = \"^[a-z]+$\""),
                ("even", "custom = is_even"),
            ]
        );
        assert_eq!(failures[0].message, "is -1, below the minimum");
    }
}
