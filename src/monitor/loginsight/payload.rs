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
pub fn parse_payload_limited(body: &[u8], limit: usize) -> Result<Alert, Error> {
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
