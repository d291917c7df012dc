//! Parameter schemas and typed parameter values.
//!
//! A filter declares its parameters once, as a `&'static [Param]` in its [`FilterInfo`]
//! (crate::FilterInfo). From that one declaration the crate derives
//! * the catalogue entry the web UI shows (`FILTERS_CONFIG`, SynthARium's shapes:
//!   [`Param::entry_json`]), and
//! * the validation of a stored or requested `config` object into typed [`Params`]
//!   ([`Params::parse`]), with errors a researcher can act on
//!   (`angle: 500 is above the maximum 180`).

use std::fmt;

use serde_json::{json, Map, Value};

/// One parameter of a filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// A number input: catalogue entry `{min, max, step, value, defaultValue}`. Accepted values
    /// lie in `[min, max]` on the grid `min + k * step` (so `step: 1.0` means integers).
    Number { name: &'static str, min: f64, max: f64, step: f64, default: f64 },
    /// A choice list: catalogue entry `{defaultValue: [options], value, requiresOtherFilter}`.
    /// With `requires_other_filter`, `options[0]` names another filter; the UI adds an instance of
    /// it and stores that instance's **id** in the value (so any string is accepted, `""` = unset).
    Choice { name: &'static str, options: &'static [&'static str], default: &'static str, requires_other_filter: bool },
}

impl Param {
    pub fn name(&self) -> &'static str {
        match self {
            Param::Number { name, .. } | Param::Choice { name, .. } => name,
        }
    }

    /// The default value.
    pub fn default_value(&self) -> ParamValue {
        match self {
            Param::Number { default, .. } => ParamValue::Number(*default),
            Param::Choice { default, .. } => ParamValue::Choice((*default).to_owned()),
        }
    }

    /// The catalogue entry, shaped as SynthARium's `FILTERS_CONFIG` (integral numbers as ints).
    pub fn entry_json(&self) -> Value {
        self.entry_with(&self.default_value())
    }

    /// The catalogue entry with `value` set to `v` (e.g. to store a configured instance).
    pub fn entry_with(&self, v: &ParamValue) -> Value {
        match (self, v) {
            (Param::Number { min, max, step, default, .. }, ParamValue::Number(v)) => {
                json!({"min": num(*min), "max": num(*max), "step": num(*step), "value": num(*v), "defaultValue": num(*default)})
            }
            (Param::Choice { options, requires_other_filter, .. }, ParamValue::Choice(v)) => {
                json!({"defaultValue": options, "value": v, "requiresOtherFilter": requires_other_filter})
            }
            _ => self.entry_json(),
        }
    }

    /// Validates one config entry: a whole catalogue entry (`{"value": 90, ...}`), a bare number
    /// or string, or `null` (= the default).
    pub fn parse(&self, entry: &Value) -> Result<ParamValue, ParamError> {
        let raw = match entry {
            Value::Object(m) => match m.get("value") {
                Some(v) => v,
                // An entry without `value`: fall back to a scalar `defaultValue`, else the default.
                None => match m.get("defaultValue") {
                    Some(d @ (Value::Number(_) | Value::String(_))) => d,
                    _ => &Value::Null,
                },
            },
            v => v,
        };
        let param = self.name().to_owned();
        match self {
            Param::Number { min, max, step, .. } => {
                let v = match raw {
                    Value::Null => return Ok(self.default_value()),
                    Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
                    Value::String(s) => s.trim().parse::<f64>().map_err(|_| ParamError::WrongType {
                        param: param.clone(),
                        expected: "a number",
                        got: raw.to_string(),
                    })?,
                    other => return Err(ParamError::WrongType { param, expected: "a number", got: other.to_string() }),
                };
                if !v.is_finite() {
                    return Err(ParamError::WrongType { param, expected: "a finite number", got: raw.to_string() });
                }
                if v < *min {
                    return Err(ParamError::BelowMin { param, value: v, min: *min });
                }
                if v > *max {
                    return Err(ParamError::AboveMax { param, value: v, max: *max });
                }
                if *step > 0.0 {
                    let k = (v - min) / step;
                    if (k - k.round()).abs() > 1e-6 {
                        return Err(ParamError::OffStep { param, value: v, min: *min, step: *step });
                    }
                }
                Ok(ParamValue::Number(v))
            }
            Param::Choice { options, requires_other_filter, .. } => {
                let v = match raw {
                    Value::Null => return Ok(self.default_value()),
                    Value::String(s) => s.clone(),
                    other => return Err(ParamError::WrongType { param, expected: "a string", got: other.to_string() }),
                };
                if !requires_other_filter && !options.contains(&v.as_str()) {
                    return Err(ParamError::NotAnOption {
                        param,
                        value: v,
                        options: options.iter().map(|o| o.to_string()).collect(),
                    });
                }
                Ok(ParamValue::Choice(v))
            }
        }
    }
}

/// Integers stay integers on the wire (SynthARium's UI and validators expect ints).
fn num(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

/// `180` rather than `180.0` in messages.
fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// A validated parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Number(f64),
    Choice(String),
}

impl From<f64> for ParamValue {
    fn from(v: f64) -> Self {
        ParamValue::Number(v)
    }
}

impl From<i32> for ParamValue {
    fn from(v: i32) -> Self {
        ParamValue::Number(v as f64)
    }
}

impl From<&str> for ParamValue {
    fn from(v: &str) -> Self {
        ParamValue::Choice(v.to_owned())
    }
}

/// Validated, typed parameters of one filter instance, in schema order.
///
/// Getters take the parameter's name and **panic** if the schema has no such parameter (a bug in
/// the filter, found by its first test; the chain contains the panic).
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    schema: &'static [Param],
    values: Vec<ParamValue>,
}

impl Params {
    /// Every parameter at its default.
    pub fn defaults(schema: &'static [Param]) -> Params {
        Params { schema, values: schema.iter().map(Param::default_value).collect() }
    }

    /// Validates a filter's `config` object against `schema`. Each key may hold a whole catalogue
    /// entry (`{"min":1,"max":180,"step":1,"value":90,"defaultValue":45}`), a bare number or
    /// string, or `null`. Missing parameters take their default; unknown keys are ignored (so a
    /// config written by a newer version still loads). `null` as the whole config means "all
    /// defaults".
    pub fn parse(schema: &'static [Param], config: &Value) -> Result<Params, ParamError> {
        let mut params = Params::defaults(schema);
        let map = match config {
            Value::Object(m) => m,
            Value::Null => return Ok(params),
            other => return Err(ParamError::NotAnObject { got: other.to_string() }),
        };
        for (i, p) in schema.iter().enumerate() {
            if let Some(entry) = map.get(p.name()) {
                params.values[i] = p.parse(entry)?;
            }
        }
        Ok(params)
    }

    /// The schema these values follow.
    pub fn schema(&self) -> &'static [Param] {
        self.schema
    }

    fn index(&self, name: &str) -> usize {
        match self.schema.iter().position(|p| p.name() == name) {
            Some(i) => i,
            None => panic!(
                "no parameter {name:?} in this filter's schema (declared: {:?})",
                self.schema.iter().map(Param::name).collect::<Vec<_>>()
            ),
        }
    }

    /// The value of `name`, if the schema has it.
    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.schema.iter().position(|p| p.name() == name).map(|i| &self.values[i])
    }

    /// A number parameter's value.
    pub fn number(&self, name: &str) -> f64 {
        match &self.values[self.index(name)] {
            ParamValue::Number(v) => *v,
            ParamValue::Choice(_) => panic!("parameter {name:?} is a choice, not a number"),
        }
    }

    /// A number parameter's value rounded to an integer.
    pub fn int(&self, name: &str) -> i64 {
        self.number(name).round() as i64
    }

    /// A choice parameter's value.
    pub fn choice(&self, name: &str) -> &str {
        match &self.values[self.index(name)] {
            ParamValue::Choice(v) => v,
            ParamValue::Number(_) => panic!("parameter {name:?} is a number, not a choice"),
        }
    }

    /// Sets one value, validated like a config entry (for tests and the harness):
    /// `params.set("angle", 90)?`.
    pub fn set(&mut self, name: &str, value: impl Into<ParamValue>) -> Result<(), ParamError> {
        let i = self
            .schema
            .iter()
            .position(|p| p.name() == name)
            .ok_or_else(|| ParamError::Unknown { param: name.to_owned() })?;
        let raw = match value.into() {
            ParamValue::Number(v) => json!(v),
            ParamValue::Choice(s) => json!(s),
        };
        self.values[i] = self.schema[i].parse(&raw)?;
        Ok(())
    }

    /// `self` with one value changed (builder style, for tests): panics on an invalid value.
    pub fn with(mut self, name: &str, value: impl Into<ParamValue>) -> Params {
        if let Err(e) = self.set(name, value) {
            panic!("{e}");
        }
        self
    }

    /// The config object as SynthARium stores it: one whole catalogue entry per parameter, with
    /// `value` set to these values.
    pub fn to_config_json(&self) -> Value {
        let mut m = Map::new();
        for (p, v) in self.schema.iter().zip(&self.values) {
            m.insert(p.name().to_owned(), p.entry_with(v));
        }
        Value::Object(m)
    }
}

/// Why a config did not validate. The `Display` text names the parameter first and is meant for
/// the experimenter (`angle: 500 is above the maximum 180`).
#[derive(Debug, Clone, PartialEq)]
pub enum ParamError {
    /// The whole config is not a JSON object.
    NotAnObject {
        got: String,
    },
    /// A value of the wrong JSON type.
    WrongType {
        param: String,
        expected: &'static str,
        got: String,
    },
    BelowMin {
        param: String,
        value: f64,
        min: f64,
    },
    AboveMax {
        param: String,
        value: f64,
        max: f64,
    },
    /// Not on the grid `min + k * step`.
    OffStep {
        param: String,
        value: f64,
        min: f64,
        step: f64,
    },
    /// A choice value not among the options.
    NotAnOption {
        param: String,
        value: String,
        options: Vec<String>,
    },
    /// A name the schema does not declare ([`Params::set`]).
    Unknown {
        param: String,
    },
    /// A filter-specific rejection (from a constructor or `update`).
    Invalid {
        param: String,
        reason: String,
    },
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::NotAnObject { got } => write!(f, "config must be a JSON object, got {got}"),
            ParamError::WrongType { param, expected, got } => write!(f, "{param}: expected {expected}, got {got}"),
            ParamError::BelowMin { param, value, min } => {
                write!(f, "{param}: {} is below the minimum {}", fmt_num(*value), fmt_num(*min))
            }
            ParamError::AboveMax { param, value, max } => {
                write!(f, "{param}: {} is above the maximum {}", fmt_num(*value), fmt_num(*max))
            }
            ParamError::OffStep { param, value, min, step } => {
                write!(f, "{param}: {} is not a step of {} from {}", fmt_num(*value), fmt_num(*step), fmt_num(*min))
            }
            ParamError::NotAnOption { param, value, options } => {
                write!(f, "{param}: {value:?} is not one of ")?;
                for (i, o) in options.iter().enumerate() {
                    write!(f, "{}{o:?}", if i > 0 { ", " } else { "" })?;
                }
                Ok(())
            }
            ParamError::Unknown { param } => write!(f, "{param}: no such parameter"),
            ParamError::Invalid { param, reason } => write!(f, "{param}: {reason}"),
        }
    }
}

impl std::error::Error for ParamError {}

#[cfg(test)]
mod tests {
    use super::*;

    static SCHEMA: &[Param] = &[
        Param::Choice {
            name: "direction",
            options: &["clockwise", "anti-clockwise"],
            default: "clockwise",
            requires_other_filter: false,
        },
        Param::Number { name: "angle", min: 1.0, max: 180.0, step: 1.0, default: 45.0 },
        Param::Number { name: "gain", min: 0.0, max: 1.0, step: 0.25, default: 0.5 },
        Param::Choice { name: "filterId", options: &["SPEAKING_TIME"], default: "", requires_other_filter: true },
    ];

    fn err(config: Value) -> String {
        Params::parse(SCHEMA, &config).unwrap_err().to_string()
    }

    #[test]
    fn entries_have_synthariums_shapes() {
        assert_eq!(SCHEMA[1].entry_json(), json!({"min": 1, "max": 180, "step": 1, "value": 45, "defaultValue": 45}));
        assert!(SCHEMA[1].entry_json()["min"].is_i64(), "integral numbers are ints");
        assert_eq!(
            SCHEMA[2].entry_json(),
            json!({"min": 0, "max": 1, "step": 0.25, "value": 0.5, "defaultValue": 0.5})
        );
        assert_eq!(
            SCHEMA[0].entry_json(),
            json!({"defaultValue": ["clockwise", "anti-clockwise"], "value": "clockwise", "requiresOtherFilter": false})
        );
        assert_eq!(
            SCHEMA[3].entry_json(),
            json!({"defaultValue": ["SPEAKING_TIME"], "value": "", "requiresOtherFilter": true})
        );
    }

    #[test]
    fn parses_whole_entries_bare_values_and_defaults() {
        let p = Params::parse(
            SCHEMA,
            &json!({"angle": {"min": 1, "max": 180, "step": 1, "value": 90, "defaultValue": 45}, "direction": "anti-clockwise",
                    "filterId": {"defaultValue": ["SPEAKING_TIME"], "value": "3f2a", "requiresOtherFilter": true}, "extra": 1}),
        )
        .unwrap();
        assert_eq!(p.number("angle"), 90.0);
        assert_eq!(p.int("angle"), 90);
        assert_eq!(p.choice("direction"), "anti-clockwise");
        assert_eq!(p.choice("filterId"), "3f2a");
        assert_eq!(p.number("gain"), 0.5, "missing = default");
        assert_eq!(Params::parse(SCHEMA, &json!({"angle": "12"})).unwrap().number("angle"), 12.0);
        assert_eq!(Params::parse(SCHEMA, &Value::Null).unwrap(), Params::defaults(SCHEMA));
        let round_trip = Params::parse(SCHEMA, &p.to_config_json()).unwrap();
        assert_eq!(round_trip, p);
    }

    #[test]
    fn errors_name_the_parameter_and_the_limit() {
        assert_eq!(err(json!({"angle": 500})), "angle: 500 is above the maximum 180");
        assert_eq!(err(json!({"angle": {"value": 0}})), "angle: 0 is below the minimum 1");
        assert_eq!(err(json!({"angle": 2.5})), "angle: 2.5 is not a step of 1 from 1");
        assert_eq!(err(json!({"gain": 0.3})), "gain: 0.3 is not a step of 0.25 from 0");
        assert_eq!(err(json!({"angle": "fast"})), "angle: expected a number, got \"fast\"");
        assert_eq!(err(json!({"angle": [1]})), "angle: expected a number, got [1]");
        assert_eq!(
            err(json!({"direction": "up"})),
            "direction: \"up\" is not one of \"clockwise\", \"anti-clockwise\""
        );
        assert_eq!(err(json!({"direction": 3})), "direction: expected a string, got 3");
        assert_eq!(err(json!([1])), "config must be a JSON object, got [1]");
    }

    #[test]
    fn set_validates() {
        let mut p = Params::defaults(SCHEMA);
        p.set("angle", 90).unwrap();
        assert_eq!(p.number("angle"), 90.0);
        assert_eq!(p.set("angle", 999).unwrap_err().to_string(), "angle: 999 is above the maximum 180");
        assert_eq!(p.set("nope", 1).unwrap_err().to_string(), "nope: no such parameter");
        assert_eq!(p.number("angle"), 90.0, "a rejected value leaves the old one");
    }

    #[test]
    #[should_panic(expected = "no parameter \"angel\"")]
    fn a_misspelt_getter_panics_with_the_declared_names() {
        Params::defaults(SCHEMA).number("angel");
    }
}
