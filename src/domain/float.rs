//! A JSON encoding of `f64` that reads back whatever was written. `serde_json` writes NaN and the
//! infinities as `null`, which then fails to decode as a number, so one such value would make the
//! snapshot or event that holds it unreadable for good. Here finite values stay plain numbers;
//! NaN, `inf` and `-inf` are written as the strings `"NaN"`, `"Infinity"` and `"-Infinity"`, and a
//! `null` left by older code reads as NaN.

use serde::{Deserialize, Deserializer, Serializer};

/// Writes `value` as a number, or as a string when it is not finite.
pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.is_finite() {
        serializer.serialize_f64(*value)
    } else if value.is_nan() {
        serializer.serialize_str("NaN")
    } else if *value > 0.0 {
        serializer.serialize_str("Infinity")
    } else {
        serializer.serialize_str("-Infinity")
    }
}

/// Reads a number, one of the strings [`serialize`] writes, or `null` (as NaN).
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Encoded {
        Number(f64),
        Text(String),
        Null(()),
    }
    match Encoded::deserialize(deserializer)? {
        Encoded::Number(n) => Ok(n),
        Encoded::Null(()) => Ok(f64::NAN),
        Encoded::Text(t) => match t.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => Err(serde::de::Error::custom(format!(
                "expected a number, \"NaN\", \"Infinity\" or \"-Infinity\", got {:?}",
                other.chars().take(40).collect::<String>()
            ))),
        },
    }
}
