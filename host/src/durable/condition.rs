//! Property conditions on events: the filter of `wait-for-event`, and the
//! trigger and exit rules of `meta`.

use super::Condition;
use serde_json::Value;
use std::cmp::Ordering;

impl Condition {
    /// Whether an event's properties (a JSON object) satisfy this condition.
    pub fn matches(&self, properties: &Value) -> bool {
        let found = self
            .property
            .split('.')
            .try_fold(properties, |v, key| v.get(key));
        match (self.op.as_str(), found) {
            ("exists", found) => found.is_some(),
            ("neq", None) => true,
            ("neq", Some(v)) => v != &self.value,
            (_, None) => false,
            ("eq", Some(v)) => v == &self.value,
            ("gt", Some(v)) => compare(v, &self.value) == Some(Ordering::Greater),
            ("gte", Some(v)) => matches!(
                compare(v, &self.value),
                Some(Ordering::Greater | Ordering::Equal)
            ),
            ("lt", Some(v)) => compare(v, &self.value) == Some(Ordering::Less),
            ("lte", Some(v)) => matches!(
                compare(v, &self.value),
                Some(Ordering::Less | Ordering::Equal)
            ),
            ("contains", Some(Value::String(s))) => {
                self.value.as_str().is_some_and(|needle| s.contains(needle))
            }
            ("contains", Some(Value::Array(items))) => items.contains(&self.value),
            _ => false,
        }
    }
}

/// All conditions hold (an empty list always holds).
pub fn all_match(conditions: &[Condition], properties: &Value) -> bool {
    conditions.iter().all(|c| c.matches(properties))
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn c(property: &str, op: &str, value: Value) -> Condition {
        Condition {
            property: property.into(),
            op: op.into(),
            value,
        }
    }

    #[test]
    fn conditions_compare_json_values() {
        let props = json!({"plan": "pro", "seats": 5, "tags": ["a", "b"], "org": {"tier": "gold"}});
        assert!(c("plan", "eq", json!("pro")).matches(&props));
        assert!(!c("plan", "eq", json!("free")).matches(&props));
        assert!(c("seats", "gt", json!(4)).matches(&props));
        assert!(c("seats", "lte", json!(5)).matches(&props));
        assert!(!c("seats", "lt", json!(5)).matches(&props));
        assert!(c("tags", "contains", json!("b")).matches(&props));
        assert!(c("plan", "contains", json!("r")).matches(&props));
        assert!(c("org.tier", "eq", json!("gold")).matches(&props));
        assert!(c("missing", "neq", json!(1)).matches(&props));
        assert!(!c("missing", "exists", Value::Null).matches(&props));
        assert!(
            !c("plan", "gt", json!(3)).matches(&props),
            "a string is not comparable with a number"
        );
    }
}
