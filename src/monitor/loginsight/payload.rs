//! Reading the webhook's JSON: the legacy shape field by field (errors name the field) and the
//! templated user-defined shape, walked for log text and message objects.

use super::*;

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn opt_str(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    at: &str,
) -> Result<Option<String>, Error> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(field_err(
            format!("{at}{key}"),
            format!("expected a string, found {}", type_name(v)),
        )),
    }
}

fn opt_int(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    at: &str,
) -> Result<Option<i64>, Error> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && f.fract() == 0.0)
                    .map(|f| f as i64)
            })
            .map(Some)
            .ok_or_else(|| field_err(format!("{at}{key}"), format!("{n} is not an integer"))),
        Some(v) => Err(field_err(
            format!("{at}{key}"),
            format!("expected a number, found {}", type_name(v)),
        )),
    }
}

/// Parses a webhook body.
pub fn parse_payload(body: &[u8]) -> Result<Alert, Error> {
    parse_payload_limited(body, usize::MAX)
}

/// Parses a webhook body of at most `limit` messages (more: [`Error::TooManyMessages`]).
///
/// The legacy shape as Log Insight sends it is decoded straight into messages
/// ([`fast::legacy`]); any other body, or a legacy body in a form that path does not take, is
/// read as a JSON tree, field by field ([`parse_tree`]), which gives the same answer or names
/// the field at fault.
pub fn parse_payload_limited(body: &[u8], limit: usize) -> Result<Alert, Error> {
    match fast::legacy(body) {
        Some(alert) if alert.messages.len() > limit => Err(Error::TooManyMessages { limit }),
        Some(alert) => Ok(alert),
        None => parse_tree(body, limit),
    }
}

/// [`parse_payload_limited`] through a JSON tree.
fn parse_tree(body: &[u8], limit: usize) -> Result<Alert, Error> {
    let v: Value = serde_json::from_slice(body).map_err(|e| Error::Json {
        reason: e.to_string(),
        line: e.line(),
        column: e.column(),
    })?;
    let Value::Object(obj) = v else {
        return Err(field_err(
            "body",
            format!("expected a JSON object, found {}", type_name(&v)),
        ));
    };
    if obj.contains_key("messages") {
        legacy(&obj, limit)
    } else {
        user_defined(&obj, limit)
    }
}

fn legacy(obj: &serde_json::Map<String, Value>, limit: usize) -> Result<Alert, Error> {
    let Some(Value::Array(msgs)) = obj.get("messages") else {
        let found = obj.get("messages").map_or("nothing", type_name);
        return Err(field_err(
            "messages",
            format!("expected an array, found {found}"),
        ));
    };
    if msgs.len() > limit {
        return Err(Error::TooManyMessages { limit });
    }
    let mut messages = Vec::with_capacity(msgs.len());
    for (i, m) in msgs.iter().enumerate() {
        let at = format!("messages[{i}]");
        let Value::Object(m) = m else {
            return Err(field_err(
                at,
                format!("expected an object, found {}", type_name(m)),
            ));
        };
        messages.push(message(m, at)?);
    }
    let num_hits = opt_int(obj, "NumHits", "")?
        .map(|n| u64::try_from(n).map_err(|_| field_err("NumHits", format!("{n} is negative"))))
        .transpose()?;
    let has_more_results = match obj.get("HasMoreResults") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(v) => {
            return Err(field_err(
                "HasMoreResults",
                format!("expected a boolean, found {}", type_name(v)),
            ));
        }
    };
    Ok(Alert {
        shape: Shape::Legacy,
        name: opt_str(obj, "AlertName", "")?,
        alert_type: opt_int(obj, "AlertType", "")?,
        // Read leniently: it only tells a query alert from a system notification.
        search_period_ms: obj
            .get("SearchPeriod")
            .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))),
        num_hits,
        has_more_results,
        url: opt_str(obj, "Url", "")?,
        messages,
    })
}

/// One legacy message object (`{text, timestamp, fields}`).
fn message(m: &serde_json::Map<String, Value>, at: String) -> Result<Message, Error> {
    let prefix = format!("{at}.");
    let text = opt_str(m, "text", &prefix)?;
    let timestamp_ms = opt_int(m, "timestamp", &prefix)?;
    let mut fields = Vec::new();
    match m.get("fields") {
        None | Some(Value::Null) => {}
        Some(Value::Array(fs)) => {
            for (j, f) in fs.iter().enumerate() {
                let fat = format!("{at}.fields[{j}]");
                let Value::Object(f) = f else {
                    return Err(field_err(
                        fat,
                        format!("expected an object, found {}", type_name(f)),
                    ));
                };
                let name = match f.get("name") {
                    Some(Value::String(s)) => s.clone(),
                    other => {
                        return Err(field_err(
                            format!("{fat}.name"),
                            format!(
                                "expected a string, found {}",
                                other.map_or("nothing", type_name)
                            ),
                        ));
                    }
                };
                let content = match f.get("content") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    Some(Value::Null) | None => continue,
                    Some(v) => {
                        return Err(field_err(
                            format!("{fat}.content"),
                            format!("expected a string or number, found {}", type_name(v)),
                        ));
                    }
                };
                fields.push((name, content));
            }
        }
        Some(v) => {
            return Err(field_err(
                format!("{at}.fields"),
                format!("expected an array, found {}", type_name(v)),
            ));
        }
    }
    Ok(Message {
        at,
        text,
        timestamp_ms,
        fields,
    })
}

fn user_defined(obj: &serde_json::Map<String, Value>, limit: usize) -> Result<Alert, Error> {
    let mut messages = Vec::new();
    for (k, v) in obj {
        walk(
            v,
            &format!("$.{}", path_key(k)),
            TEXT_KEYS.contains(&k.as_str()),
            0,
            &mut Found {
                out: &mut messages,
                limit,
            },
        )?;
    }
    if messages.is_empty() {
        let mut keys: Vec<std::borrow::Cow<'_, str>> =
            obj.keys().take(20).map(|k| path_key(k)).collect();
        if obj.len() > 20 {
            keys.push(format!("and {} more", obj.len() - 20).into());
        }
        return Err(Error::NoLogLines {
            keys: keys.join(", "),
        });
    }
    let name = match obj.get("name").or_else(|| obj.get("AlertName")) {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    Ok(Alert {
        shape: Shape::UserDefined,
        name,
        alert_type: None,
        search_period_ms: None,
        num_hits: None,
        has_more_results: None,
        url: match obj.get("resultsUrl") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        },
        messages,
    })
}

/// Collects log text and message objects from a user-defined payload. A string under a text-like
/// key is split into lines; any other string is taken when it parses as a DFW line; an object
/// with `text` or `fields[]` is read as a legacy message; JSON inside a string (`additionalInfo`)
/// is walked too.
/// Messages found so far, and the most allowed.
struct Found<'a> {
    out: &'a mut Vec<Message>,
    limit: usize,
}

impl Found<'_> {
    fn push(&mut self, m: Message) -> Result<(), Error> {
        if self.out.len() >= self.limit {
            return Err(Error::TooManyMessages { limit: self.limit });
        }
        self.out.push(m);
        Ok(())
    }
}

fn walk(
    v: &Value,
    at: &str,
    text_key: bool,
    depth: usize,
    out: &mut Found<'_>,
) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    match v {
        Value::String(s) => {
            let t = s.trim();
            if (t.starts_with('{') || t.starts_with('['))
                && let Ok(inner) = serde_json::from_str::<Value>(t)
            {
                return walk(&inner, at, text_key, depth + 1, out);
            }
            let lines = s.lines().filter(|l| !l.trim().is_empty());
            let many = s.lines().filter(|l| !l.trim().is_empty()).nth(1).is_some();
            for (n, line) in lines.enumerate() {
                if text_key || is_dfw_line(line) {
                    out.push(Message {
                        at: if many {
                            format!("{at}#{n}")
                        } else {
                            at.to_owned()
                        },
                        text: Some(line.to_owned()),
                        timestamp_ms: None,
                        fields: Vec::new(),
                    })?;
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &format!("{at}[{i}]"), text_key, depth + 1, out)?;
            }
        }
        Value::Object(o) => {
            let message_like = matches!(o.get("text"), Some(Value::String(_)))
                || matches!(o.get("fields"), Some(Value::Array(_)));
            if message_like {
                out.push(message(o, at.to_owned())?)?;
            } else {
                for (k, child) in o {
                    walk(
                        child,
                        &format!("{at}.{}", path_key(k)),
                        TEXT_KEYS.contains(&k.as_str()),
                        depth + 1,
                        out,
                    )?;
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

/// The legacy shape decoded without a JSON tree: at 10,000 messages a body's tree is several
/// times its text, and building it was most of the webhook's work. It takes the forms Log
/// Insight sends (integers as integers, strings as strings, each key once) and answers `None`
/// for anything else, which [`parse_tree`] then reads.
mod fast {
    use serde::Deserialize;
    use serde::de::{self, Deserializer, Visitor};

    use super::{Alert, Message, Shape};

    /// `T` from a JSON object only (a derived struct would take an array of its fields too).
    struct Obj<T>(T);

    impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V<T>(std::marker::PhantomData<T>);
            impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
                type Value = Obj<T>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Obj<T>, A::Error> {
                    T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Obj)
                }
            }
            d.deserialize_map(V(std::marker::PhantomData))
        }
    }

    #[derive(Deserialize)]
    struct Legacy {
        messages: Vec<Obj<Msg>>,
        #[serde(rename = "AlertName", default)]
        alert_name: Option<String>,
        #[serde(rename = "AlertType", default)]
        alert_type: Option<i64>,
        #[serde(rename = "SearchPeriod", default)]
        search_period: Option<Lenient>,
        #[serde(rename = "NumHits", default)]
        num_hits: Option<i64>,
        #[serde(rename = "HasMoreResults", default)]
        has_more_results: Option<bool>,
        #[serde(rename = "Url", default)]
        url: Option<String>,
    }

    #[derive(Deserialize)]
    struct Msg {
        #[serde(default)]
        text: Option<String>,
        #[serde(default)]
        timestamp: Option<i64>,
        #[serde(default)]
        fields: Option<Vec<Obj<Field>>>,
    }

    #[derive(Deserialize)]
    struct Field {
        name: String,
        #[serde(default)]
        content: Option<Content>,
    }

    /// A field's content: a string, or a number as JSON writes it.
    struct Content(String);

    impl<'de> Deserialize<'de> for Content {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Content;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a string or a number")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Content, E> {
                    Ok(Content(v.to_owned()))
                }
                fn visit_string<E: de::Error>(self, v: String) -> Result<Content, E> {
                    Ok(Content(v))
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<Content, E> {
                    Ok(Content(serde_json::Number::from(v).to_string()))
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<Content, E> {
                    Ok(Content(serde_json::Number::from(v).to_string()))
                }
                fn visit_f64<E: de::Error>(self, v: f64) -> Result<Content, E> {
                    serde_json::Number::from_f64(v)
                        .map(|n| Content(n.to_string()))
                        .ok_or_else(|| E::custom("not a finite number"))
                }
            }
            d.deserialize_any(V)
        }
    }

    /// `SearchPeriod` as the tree path reads it: any number, a fraction cut off.
    struct Lenient(i64);

    impl<'de> Deserialize<'de> for Lenient {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Lenient;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a number")
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<Lenient, E> {
                    Ok(Lenient(v))
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<Lenient, E> {
                    Ok(Lenient(i64::try_from(v).unwrap_or(i64::MAX)))
                }
                #[allow(clippy::cast_possible_truncation)]
                fn visit_f64<E: de::Error>(self, v: f64) -> Result<Lenient, E> {
                    Ok(Lenient(v as i64))
                }
            }
            d.deserialize_any(V)
        }
    }

    /// The alert, or `None` when the body is not the legacy shape in the forms above.
    pub(super) fn legacy(body: &[u8]) -> Option<Alert> {
        let Obj(l): Obj<Legacy> = serde_json::from_slice(body).ok()?;
        let num_hits = l.num_hits.map(u64::try_from).transpose().ok()?;
        let messages = l
            .messages
            .into_iter()
            .enumerate()
            .map(|(i, Obj(m))| Message {
                at: format!("messages[{i}]"),
                text: m.text,
                timestamp_ms: m.timestamp,
                fields: m
                    .fields
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|Obj(f)| Some((f.name, f.content?.0)))
                    .collect(),
            })
            .collect();
        Some(Alert {
            shape: Shape::Legacy,
            name: l.alert_name,
            alert_type: l.alert_type,
            search_period_ms: l.search_period.map(|p| p.0),
            num_hits,
            has_more_results: l.has_more_results,
            url: l.url,
            messages,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    /// The reference's legacy payloads (`nsx-policy-api.md` §10, fixtures of the integration
    /// tests).
    const REFERENCE: &[&str] = &[
        include_str!("../../../tests/fixtures/monitor/loginsight-dfw-drop.json"),
        include_str!("../../../tests/fixtures/monitor/loginsight-test-alert.json"),
        include_str!("../../../tests/fixtures/monitor/loginsight-system-notification.json"),
        include_str!("../../../tests/fixtures/monitor/loginsight-misrouted.json"),
        include_str!("../../../tests/fixtures/monitor/loginsight-aggregate.json"),
        include_str!("../../../tests/fixtures/monitor/loginsight-dfw-bodies.json"),
    ];

    /// Whatever the direct decoding answers, the tree answers the same.
    fn agree(body: &str) -> Option<Alert> {
        let fast = fast::legacy(body.as_bytes());
        if let Some(a) = &fast {
            assert_eq!(
                Ok(a),
                parse_tree(body.as_bytes(), usize::MAX).as_ref(),
                "{body}"
            );
        }
        fast
    }

    #[test]
    fn the_reference_payloads_are_decoded_directly_as_the_tree_reads_them() {
        for body in REFERENCE {
            assert!(agree(body).is_some(), "{body}");
        }
    }

    #[test]
    fn forms_the_direct_decoding_does_not_take_are_read_through_the_tree() {
        let m = json!({"text": "x", "timestamp": 1, "fields": [{"name": "a", "content": "b"}]});
        for body in [
            // An array where an object belongs (a derived struct would take it).
            json!([[m]]),
            json!({"messages": [["x", 1, null]]}),
            json!({"messages": [{"fields": [["a", "b"]]}]}),
            // Numbers written as floats, a negative count, a count beyond i64.
            json!({"messages": [{"timestamp": 1.0e3}]}),
            json!({"messages": [], "NumHits": -1}),
            json!({"messages": [], "NumHits": 1.0}),
            json!({"messages": [], "NumHits": u64::MAX}),
            // Wrong types, and no messages at all (the user-defined shape).
            json!({"messages": [{"fields": [{"name": "a", "content": true}]}]}),
            json!({"messages": [{"text": 3}]}),
            json!({"messages": {}}),
            json!({"text": "2d4b6e2d INET match PASS 1002 IN 60 TCP 10.0.0.1/1->10.0.0.2/2 S"}),
        ] {
            let body = body.to_string();
            assert!(agree(&body).is_none(), "{body}");
        }
        // A key twice: the tree keeps the last.
        let twice = r#"{"messages": [], "AlertName": "a", "AlertName": "b"}"#;
        assert!(agree(twice).is_none());
        assert_eq!(
            parse_payload(twice.as_bytes()).unwrap().name.as_deref(),
            Some("b")
        );
    }

    #[test]
    fn lenient_and_optional_fields_read_the_same_either_way() {
        for body in [
            json!({"messages": [], "SearchPeriod": 300000.7, "NumHits": u64::try_from(i64::MAX).unwrap()}),
            json!({"messages": [], "SearchPeriod": u64::MAX, "AlertType": null, "Url": null}),
            json!({"messages": [{"text": null, "timestamp": null, "fields": null}]}),
            json!({"messages": [{"fields": [{"name": "n", "content": 12}, {"name": "f", "content": 1.5e-3}, {"name": "z"}, {"name": "u", "content": null}]}]}),
            json!({"messages": [{"text": "a \u{e9} \"quoted\"\nline", "extra": {"deep": [1, 2]}}], "Other": [null]}),
        ] {
            let body = body.to_string();
            assert!(agree(&body).is_some(), "{body}");
        }
    }

    #[test]
    fn too_many_messages_are_refused_on_either_path() {
        let body = json!({"messages": [{"text": "a"}, {"text": "b"}]}).to_string();
        assert_eq!(
            parse_payload_limited(body.as_bytes(), 1),
            Err(Error::TooManyMessages { limit: 1 })
        );
        assert_eq!(
            parse_tree(body.as_bytes(), 1),
            Err(Error::TooManyMessages { limit: 1 })
        );
    }

    fn json_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1.0e20f64..1.0e20).prop_map(Value::from),
            "[a-z0-9 ./>-]{0,12}".prop_map(Value::from),
        ]
    }

    fn field() -> impl Strategy<Value = Value> {
        (json_leaf(), json_leaf(), any::<u8>()).prop_map(|(name, content, shape)| match shape % 4 {
            0 => json!({"name": name, "content": content}),
            1 => json!({"name": "vmw_nsxt_firewall_action", "content": content}),
            2 => json!({"name": name}),
            _ => json!([name, content]),
        })
    }

    fn message() -> impl Strategy<Value = Value> {
        (
            json_leaf(),
            json_leaf(),
            prop::collection::vec(field(), 0..3),
            any::<u8>(),
        )
            .prop_map(|(text, ts, fields, shape)| {
                let mut m = serde_json::Map::new();
                if shape & 1 != 0 {
                    m.insert("text".into(), text);
                }
                if shape & 2 != 0 {
                    m.insert("timestamp".into(), ts);
                }
                if shape & 4 != 0 {
                    m.insert("fields".into(), Value::from(fields));
                }
                Value::Object(m)
            })
    }

    proptest! {
        /// Any legacy-looking payload: the direct decoding either answers as the tree does or
        /// leaves it to the tree.
        #[test]
        fn the_direct_decoding_agrees_with_the_tree(
            messages in prop::collection::vec(message(), 0..4),
            top in prop::collection::vec(json_leaf(), 6),
            present in any::<u8>(),
        ) {
            let mut o = serde_json::Map::new();
            o.insert("messages".into(), Value::from(messages));
            for (i, (k, v)) in ["AlertName", "AlertType", "SearchPeriod", "NumHits", "HasMoreResults", "Url"]
                .into_iter()
                .zip(top)
                .enumerate()
            {
                if present & (1 << i) != 0 {
                    o.insert(k.into(), v);
                }
            }
            agree(&Value::Object(o).to_string());
        }
    }
}
