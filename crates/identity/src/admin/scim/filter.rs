//! SCIM filters (RFC 7644 §3.4.2.2) parsed into a tree whose attributes are a closed set
//! ([`Attr`]) and whose values stay values: [`super::people`] turns the tree into SQL where each
//! attribute is a fixed column expression and each value a bind parameter, so no filter text ever
//! reaches the SQL string.
//!
//! Supported: `eq ne co sw ew gt ge lt le pr`, `and`, `or`, `not ( … )`, parentheses, a value
//! path with one comparison (`members[value eq "…"]`, the same as `members.value eq "…"`), the
//! attributes of the User or the Group schema (with or without the schema URN prefix). Anything
//! else is `invalidFilter`. Nesting is bounded, so a hostile filter cannot exhaust the stack.

use sqlx::{Postgres, QueryBuilder};

use crate::IdentityError;

/// The attributes a filter may name: the only column expressions the SQL can contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attr {
    Id,
    UserName,
    ExternalId,
    DisplayName,
    GivenName,
    FamilyName,
    Email,
    Active,
    /// A Group's member (`members.value`): a person's id. Parsed for Groups only.
    Member,
}

/// The resource a filter is for: each has its own closed set of attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    User,
    Group,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare(Attr, Op, Value),
    Present(Attr),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
}

const MAX_DEPTH: usize = 16;
const MAX_LEN: usize = 2000;
const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:user:";
const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:group:";

fn invalid(reason: impl Into<String>) -> IdentityError {
    IdentityError::Unprocessable { code: "invalidFilter", reason: reason.into() }
}

impl Attr {
    fn parse(path: &str, schema: Schema) -> Result<Self, IdentityError> {
        let lower = path.to_ascii_lowercase();
        if schema == Schema::Group {
            let name = lower.strip_prefix(GROUP_URN).unwrap_or(&lower);
            return Ok(match name {
                "id" => Self::Id,
                "externalid" => Self::ExternalId,
                "displayname" => Self::DisplayName,
                "members" | "members.value" => Self::Member,
                _ => return Err(invalid(format!("cannot filter on {path}"))),
            });
        }
        let name = lower.strip_prefix(USER_URN).unwrap_or(&lower);
        Ok(match name {
            "id" => Self::Id,
            "username" => Self::UserName,
            "externalid" => Self::ExternalId,
            "displayname" => Self::DisplayName,
            "name.givenname" => Self::GivenName,
            "name.familyname" => Self::FamilyName,
            "emails" | "emails.value" => Self::Email,
            "active" => Self::Active,
            _ => return Err(invalid(format!("cannot filter on {path}"))),
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Str(String),
    Open,
    Close,
    OpenValue,
    CloseValue,
}

fn tokens(s: &str) -> Result<Vec<Token>, IdentityError> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                out.push(Token::Open);
            }
            ')' => {
                chars.next();
                out.push(Token::Close);
            }
            '[' => {
                chars.next();
                out.push(Token::OpenValue);
            }
            ']' => {
                chars.next();
                out.push(Token::CloseValue);
            }
            '"' => {
                chars.next();
                let mut v = String::new();
                loop {
                    match chars.next() {
                        None => return Err(invalid("unterminated string")),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('"') => v.push('"'),
                            Some('\\') => v.push('\\'),
                            Some('/') => v.push('/'),
                            Some('n') => v.push('\n'),
                            Some('t') => v.push('\t'),
                            _ => return Err(invalid("bad escape in string")),
                        },
                        Some(c) => v.push(c),
                    }
                }
                out.push(Token::Str(v));
            }
            _ => {
                let mut w = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | '"') {
                        break;
                    }
                    w.push(c);
                    chars.next();
                }
                out.push(Token::Word(w));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Token>,
    at: usize,
    schema: Schema,
}

impl Parser {
    fn peek_word(&self) -> Option<String> {
        match self.toks.get(self.at) {
            Some(Token::Word(w)) => Some(w.to_ascii_lowercase()),
            _ => None,
        }
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn or(&mut self, depth: usize) -> Result<Filter, IdentityError> {
        if depth > MAX_DEPTH {
            return Err(invalid("filter nested too deeply"));
        }
        let mut left = self.and(depth)?;
        while self.peek_word().as_deref() == Some("or") {
            self.at += 1;
            left = Filter::Or(Box::new(left), Box::new(self.and(depth)?));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Filter, IdentityError> {
        let mut left = self.unary(depth)?;
        while self.peek_word().as_deref() == Some("and") {
            self.at += 1;
            left = Filter::And(Box::new(left), Box::new(self.unary(depth)?));
        }
        Ok(left)
    }

    fn group(&mut self, depth: usize) -> Result<Filter, IdentityError> {
        let inner = self.or(depth + 1)?;
        match self.next() {
            Some(Token::Close) => Ok(inner),
            _ => Err(invalid("expected )")),
        }
    }

    fn unary(&mut self, depth: usize) -> Result<Filter, IdentityError> {
        match self.next() {
            Some(Token::Open) => self.group(depth),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("not") => match self.next() {
                Some(Token::Open) => Ok(Filter::Not(Box::new(self.group(depth)?))),
                _ => Err(invalid("expected ( after not")),
            },
            Some(Token::Word(path)) => {
                // A value path (`members[value eq "…"]`): one comparison on a sub-attribute.
                let value_path = self.toks.get(self.at) == Some(&Token::OpenValue);
                let attr = if value_path {
                    self.at += 1;
                    match self.next() {
                        Some(Token::Word(sub)) => Attr::parse(&format!("{path}.{sub}"), self.schema)?,
                        _ => return Err(invalid("expected a sub-attribute after [")),
                    }
                } else {
                    Attr::parse(&path, self.schema)?
                };
                let f = self.comparison(attr)?;
                if value_path && self.next() != Some(Token::CloseValue) {
                    return Err(invalid("expected ]"));
                }
                Ok(f)
            }
            _ => Err(invalid("expected an attribute, ( or not")),
        }
    }

    fn comparison(&mut self, attr: Attr) -> Result<Filter, IdentityError> {
        let op = match self.next() {
            Some(Token::Word(op)) => op.to_ascii_lowercase(),
            _ => return Err(invalid("expected an operator")),
        };
        let op = match op.as_str() {
            "pr" => return Ok(Filter::Present(attr)),
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "co" => Op::Co,
            "sw" => Op::Sw,
            "ew" => Op::Ew,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            other => return Err(invalid(format!("unknown operator {other}"))),
        };
        let value = match self.next() {
            Some(Token::Str(s)) => Value::Str(s),
            Some(Token::Word(w)) if w == "true" => Value::Bool(true),
            Some(Token::Word(w)) if w == "false" => Value::Bool(false),
            Some(Token::Word(w)) if w == "null" => Value::Null,
            _ => return Err(invalid("expected a quoted string, true, false or null")),
        };
        match (attr, &value, op) {
            (Attr::Active, Value::Bool(_), Op::Eq | Op::Ne) | (_, Value::Null, Op::Eq | Op::Ne) => {}
            (Attr::Active, _, _) => return Err(invalid("active compares only with eq/ne true or false")),
            (_, Value::Str(_), _) => {}
            _ => return Err(invalid("this attribute takes a quoted string")),
        }
        Ok(Filter::Compare(attr, op, value))
    }
}

/// Appends the comparison of the column expression `c` with the string `v` as SQL, `v` a bind
/// parameter. `wrap` is `"lower"` when the attribute compares case-insensitively (then `c` is
/// already lowered), `""` when exactly (`caseExact`).
pub(crate) fn push_text_compare(q: &mut QueryBuilder<'_, Postgres>, c: &str, wrap: &str, op: Op, v: &str) {
    let sym = match op {
        Op::Co => {
            q.push(format!("(strpos({c}, {wrap}("));
            q.push_bind(v.to_owned()).push(")) > 0)");
            return;
        }
        Op::Sw => {
            q.push(format!("starts_with({c}, {wrap}("));
            q.push_bind(v.to_owned()).push("))");
            return;
        }
        Op::Ew => {
            q.push(format!("(right({c}, char_length("));
            q.push_bind(v.to_owned()).push(format!(")) = {wrap}("));
            q.push_bind(v.to_owned()).push("))");
            return;
        }
        Op::Eq => "=",
        Op::Ne => "is distinct from",
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::Lt => "<",
        Op::Le => "<=",
    };
    q.push(format!("({c} {sym} {wrap}("));
    q.push_bind(v.to_owned()).push("))");
}

/// Parses a User filter; anything outside the supported grammar is 400 `invalidFilter`.
pub fn parse(s: &str) -> Result<Filter, IdentityError> {
    parse_for(s, Schema::User)
}

/// Parses a filter on `schema`'s attributes; anything else is 400 `invalidFilter`.
pub fn parse_for(s: &str, schema: Schema) -> Result<Filter, IdentityError> {
    if s.len() > MAX_LEN {
        return Err(invalid("filter too long"));
    }
    let mut p = Parser { toks: tokens(s)?, at: 0, schema };
    let f = p.or(0)?;
    if p.at != p.toks.len() {
        return Err(invalid("unexpected text after the filter"));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_identity_providers_send_parse() {
        assert_eq!(
            parse(r#"userName eq "a@b.example""#).ok(),
            Some(Filter::Compare(Attr::UserName, Op::Eq, Value::Str("a@b.example".into())))
        );
        assert!(parse(r#"externalId eq "00u1" and active eq true"#).is_ok());
        assert!(parse(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "a""#).is_ok());
        assert!(parse(r#"not (emails.value co "x") or (displayName pr)"#).is_ok());
        assert!(parse(r#"userName Eq "J\"o""#).is_ok());
    }

    #[test]
    fn injection_and_garbage_are_refused_or_stay_values() {
        // Quotes inside a string stay inside the value.
        assert_eq!(
            parse(r#"userName eq "x' or '1'='1""#).ok(),
            Some(Filter::Compare(Attr::UserName, Op::Eq, Value::Str("x' or '1'='1".into())))
        );
        for bad in [
            "",
            "userName",
            "userName eq",
            r#"password eq "x""#,
            r#"userName; drop table users eq "x""#,
            r#"userName eq x"#,
            r#"userName eq "x" )"#,
            r#"(userName eq "x""#,
            r#"active eq "yes""#,
            r#"userName eq "unterminated"#,
            r#"userName xx "x""#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let deep = format!("{}userName pr{}", "(".repeat(100), ")".repeat(100));
        assert!(parse(&deep).is_err(), "deep nesting is bounded");
    }

    #[test]
    fn group_filters_name_only_group_attributes() {
        let member = Filter::Compare(Attr::Member, Op::Eq, Value::Str("0190".into()));
        assert_eq!(parse_for(r#"members[value eq "0190"]"#, Schema::Group).ok(), Some(member.clone()));
        assert_eq!(parse_for(r#"members.value eq "0190""#, Schema::Group).ok(), Some(member));
        assert_eq!(
            parse_for(r#"displayName eq "x\" or 1=1""#, Schema::Group).ok(),
            Some(Filter::Compare(Attr::DisplayName, Op::Eq, Value::Str("x\" or 1=1".into())))
        );
        for bad in [
            r#"userName eq "a""#,
            r#"members[value eq "a""#,
            r#"members[value eq "a"]]"#,
            r#"members[] eq "a""#,
            r#"active eq true"#,
            r#"displayName eq "x" or 1=1"#,
        ] {
            assert!(parse_for(bad, Schema::Group).is_err(), "{bad}");
        }
        assert!(parse(r#"members.value eq "a""#).is_err(), "a User has no members");
    }
}
