//! The part of vRNI's search filter language the simulator evaluates: `field = 'value'` terms
//! joined by `and` / `or`, with parentheses. A field is a dotted path into the entity
//! (`source_ip.ip_address`, `destination_vm.name`, `source_vm_tags`); a Reference's `name`
//! is its `entity_name`. An `ip_address` compared with a CIDR block matches the addresses in it;
//! a list field matches when one element equals the value. Anything else is refused.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

/// A parsed filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// `field = 'value'`.
    Eq(String, String),
    /// Both.
    And(Box<Expr>, Box<Expr>),
    /// Either.
    Or(Box<Expr>, Box<Expr>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Ident(String),
    Str(String),
    Eq,
    Open,
    Close,
}

fn tokens(s: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '=' => {
                chars.next();
                out.push(Token::Eq);
            }
            '(' => {
                chars.next();
                out.push(Token::Open);
            }
            ')' => {
                chars.next();
                out.push(Token::Close);
            }
            '\'' => {
                chars.next();
                let mut v = String::new();
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => v.push(c),
                        None => return Err("unterminated string".into()),
                    }
                }
                out.push(Token::Str(v));
            }
            c if c.is_ascii_alphanumeric() || c == '_' || c == '.' => {
                let mut v = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                        v.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Token::Ident(v));
            }
            other => return Err(format!("unexpected {other:?}")),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek_word(&self, w: &str) -> bool {
        matches!(self.toks.get(self.at), Some(Token::Ident(x)) if x.eq_ignore_ascii_case(w))
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut e = self.and()?;
        while self.peek_word("or") {
            self.at += 1;
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut e = self.term()?;
        while self.peek_word("and") {
            self.at += 1;
            e = Expr::And(Box::new(e), Box::new(self.term()?));
        }
        Ok(e)
    }

    fn term(&mut self) -> Result<Expr, String> {
        match self.toks.get(self.at).cloned() {
            Some(Token::Open) => {
                self.at += 1;
                let e = self.or()?;
                if self.toks.get(self.at) != Some(&Token::Close) {
                    return Err("missing )".into());
                }
                self.at += 1;
                Ok(e)
            }
            Some(Token::Ident(field)) => {
                if self.toks.get(self.at + 1) != Some(&Token::Eq) {
                    return Err(format!("expected = after {field}"));
                }
                match self.toks.get(self.at + 2).cloned() {
                    Some(Token::Str(v)) => {
                        self.at += 3;
                        Ok(Expr::Eq(field, v))
                    }
                    _ => Err(format!("expected a quoted value after {field} =")),
                }
            }
            other => Err(format!("unexpected {other:?}")),
        }
    }
}

/// Parses a filter.
pub fn parse(s: &str) -> Result<Expr, String> {
    let mut p = Parser {
        toks: tokens(s)?,
        at: 0,
    };
    let e = p.or()?;
    if p.at != p.toks.len() {
        return Err(format!("unexpected {:?}", p.toks[p.at]));
    }
    Ok(e)
}

fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        cur = match cur.get(*part) {
            Some(x) => x,
            None if last && *part == "name" => cur.get("entity_name")?,
            None => return None,
        };
    }
    Some(cur)
}

fn value_eq(have: &Value, want: &str, ip_field: bool) -> bool {
    match have {
        Value::String(s) if ip_field => match (s.parse::<IpAddr>(), want.parse::<IpNet>()) {
            (Ok(a), Ok(net)) => net.contains(&a),
            _ => s == want,
        },
        Value::String(s) => s == want,
        Value::Array(a) => a.iter().any(|x| value_eq(x, want, ip_field)),
        Value::Number(n) => n.to_string() == want,
        _ => false,
    }
}

impl Expr {
    /// True when the entity matches.
    pub fn matches(&self, entity: &Value) -> bool {
        match self {
            Expr::Eq(field, want) => lookup(entity, field)
                .is_some_and(|v| value_eq(v, want, field.ends_with("ip_address"))),
            Expr::And(a, b) => a.matches(entity) && b.matches(entity),
            Expr::Or(a, b) => a.matches(entity) || b.matches(entity),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn terms_join_with_and_or_and_parentheses() {
        let f = json!({"source_ip": {"ip_address": "10.0.0.5"}, "destination_vm": {"entity_name": "db-01"},
            "source_vm_tags": ["Orders:web"], "protocol": "TCP"});
        let e = parse("(source_ip.ip_address = '10.0.0.0/24' or destination_vm.name = 'x') and protocol = 'TCP'").unwrap();
        assert!(e.matches(&f));
        assert!(parse("destination_vm.name = 'db-01'").unwrap().matches(&f));
        assert!(parse("source_vm_tags = 'Orders:web'").unwrap().matches(&f));
        assert!(
            !parse("source_ip.ip_address = '10.0.1.0/24'")
                .unwrap()
                .matches(&f)
        );
        assert!(
            !parse("protocol = 'UDP' and source_vm_tags = 'Orders:web'")
                .unwrap()
                .matches(&f)
        );
        for bad in [
            "source_ip.ip_address",
            "a = b",
            "(a = 'b'",
            "a = 'b' c",
            "a == 'b'",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
