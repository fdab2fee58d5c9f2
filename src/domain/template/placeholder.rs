//! Reading `{{…}}` placeholders out of template text, and saying precisely what is wrong with
//! the ones that are not well formed.

use crate::domain::channel::ChannelKind;

/// A piece of template text: literal text, or a well-formed placeholder's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    Text(&'a str),
    /// The name between the braces of a well-formed `{{name}}`.
    Placeholder(&'a str),
}

/// A text split into pieces. Malformed placeholders stay in the text as they were written (so a
/// preview shows them) and are described in `problems`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scan<'a> {
    pub pieces: Vec<Piece<'a>>,
    pub problems: Vec<String>,
}

impl<'a> Scan<'a> {
    pub fn placeholders(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Placeholder(name) => Some(*name),
            Piece::Text(_) => None,
        })
    }

    /// Literal text between placeholders: before the first, between each pair, after the last.
    /// There is always one more gap than placeholders.
    pub fn gaps(&self) -> Vec<String> {
        let mut gaps = vec![String::new()];
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => {
                    if let Some(gap) = gaps.last_mut() {
                        gap.push_str(t);
                    }
                }
                Piece::Placeholder(_) => gaps.push(String::new()),
            }
        }
        gaps
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Up to 30 characters of a fragment, for messages.
fn excerpt(s: &str) -> String {
    let mut out: String = s.chars().take(30).collect();
    if s.chars().count() > 30 {
        out.push('…');
    }
    out
}

pub(crate) fn scan(text: &str) -> Scan<'_> {
    let mut pieces = Vec::new();
    let mut problems = Vec::new();
    let mut literal_from = 0;
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        if rest.starts_with("{{") {
            let opening = rest.chars().take_while(|c| *c == '{').count();
            let inner_from = i + opening;
            // A placeholder ends at the next "}}"; a new "{{" or a line break first means this
            // one was never closed.
            let after = &text[inner_from..];
            let stop = [after.find("{{"), after.find('\n')]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(after.len());
            let Some(close) = after[..stop].find("}}") else {
                problems.push(format!(
                    "\"{}\" is not closed: write placeholders as {{{{1}}}} or {{{{name}}}}",
                    excerpt(text[i..inner_from + stop].trim_end())
                ));
                i = inner_from;
                continue;
            };
            let inner = &after[..close];
            let closing = after[close..].chars().take_while(|c| *c == '}').count();
            let end = inner_from + close + closing;
            let written = &text[i..end];
            let trimmed = inner.trim();
            let problem = if opening != 2 || closing != 2 {
                Some(format!(
                    "\"{written}\" has too many braces: write {{{{{trimmed}}}}}"
                ))
            } else if trimmed.is_empty() {
                Some(format!(
                    "\"{written}\" is empty: put a number or a name between the braces"
                ))
            } else if !trimmed.chars().all(is_name_char) {
                Some(format!(
                    "\"{written}\": a placeholder name can only have letters, digits and underscores"
                ))
            } else if trimmed != inner {
                Some(format!(
                    "\"{written}\" has spaces inside the braces: write {{{{{trimmed}}}}}"
                ))
            } else {
                None
            };
            match problem {
                Some(problem) => problems.push(problem),
                None => {
                    if literal_from < i {
                        pieces.push(Piece::Text(&text[literal_from..i]));
                    }
                    pieces.push(Piece::Placeholder(inner));
                    literal_from = end;
                }
            }
            i = end;
        } else if rest.starts_with("}}") {
            problems.push("\"}}\" has no opening \"{{\"".to_owned());
            i += rest.chars().take_while(|c| *c == '}').count();
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    if literal_from < text.len() {
        pieces.push(Piece::Text(&text[literal_from..]));
    }
    Scan { pieces, problems }
}

/// How a placeholder names its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// `{{1}}`, `{{2}}`, …
    Positional(u32),
    /// `{{first_name}}`
    Named,
}

/// The style of a well-formed placeholder under a channel's naming rules, or why the name is not
/// allowed there.
pub(crate) fn classify(kind: ChannelKind, name: &str) -> Result<Style, String> {
    if kind == ChannelKind::Viber {
        // Infobip: parameters are named; a name has at most 50 characters.
        return if name.chars().count() <= super::VIBER_PARAM_NAME_MAX {
            Ok(Style::Named)
        } else {
            Err(format!(
                "{{{{{}…}}}}: Viber placeholder names have at most {} characters",
                excerpt(name),
                super::VIBER_PARAM_NAME_MAX
            ))
        };
    }
    if name.chars().all(|c| c.is_ascii_digit()) {
        return match name.parse::<u32>() {
            Ok(n) if n >= 1 && !name.starts_with('0') => Ok(Style::Positional(n)),
            Ok(n) if n >= 1 => Err(format!("{{{{{name}}}}}: write it as {{{{{n}}}}}")),
            Ok(_) => Err(format!("{{{{{name}}}}}: numbering starts at {{{{1}}}}")),
            Err(_) => Err(format!("{{{{{}}}}} is not a usable number", excerpt(name))),
        };
    }
    // Meta: named parameters are lowercase letters and underscores. SMS placeholders are
    // Herald's own, so digits are allowed after the first letter there (contact attributes
    // such as `address2`).
    let starts_with_letter = name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = name.chars().all(|c| {
        c.is_ascii_lowercase() || c == '_' || (kind == ChannelKind::Sms && c.is_ascii_digit())
    });
    if starts_with_letter && rest_ok {
        return Ok(Style::Named);
    }
    let allowed = if kind == ChannelKind::Sms {
        "lowercase letters, digits and underscores"
    } else {
        "lowercase letters and underscores only"
    };
    Err(format!(
        "{{{{{name}}}}}: named placeholders use {allowed}, starting with a letter (e.g. {{{{first_name}}}})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Vec<&str> {
        scan(text).placeholders().collect()
    }

    fn problems(text: &str) -> Vec<String> {
        scan(text).problems
    }

    #[test]
    fn well_formed_placeholders_are_found_in_order() {
        assert_eq!(names("Hi {{1}}, order {{2}}."), vec!["1", "2"]);
        assert_eq!(names("{{first_name}}{{x_1}}"), vec!["first_name", "x_1"]);
        assert_eq!(names("no placeholders { } here"), Vec::<&str>::new());
        let scan = scan("Hi {{1}}, bye");
        assert_eq!(
            scan.pieces,
            vec![
                Piece::Text("Hi "),
                Piece::Placeholder("1"),
                Piece::Text(", bye")
            ]
        );
        assert_eq!(scan.gaps(), vec!["Hi ", ", bye"]);
    }

    #[test]
    fn malformed_braces_are_reported_with_what_was_written() {
        let p = problems("Hi {{ 1 }} there");
        assert_eq!(p.len(), 1);
        assert!(
            p[0].contains("\"{{ 1 }}\"") && p[0].contains("{{1}}"),
            "{p:?}"
        );

        let p = problems("Hi {{1} there");
        assert!(p[0].contains("\"{{1} there\" is not closed"), "{p:?}");

        let p = problems("Hi {{}} there");
        assert!(p[0].contains("\"{{}}\" is empty"), "{p:?}");

        let p = problems("Hi {{{1}}} there");
        assert!(
            p[0].contains("too many braces") && p[0].contains("{{1}}"),
            "{p:?}"
        );

        let p = problems("Hi {{first-name}}");
        assert!(p[0].contains("letters, digits and underscores"), "{p:?}");

        let p = problems("Hi 1}} there");
        assert!(p[0].contains("no opening"), "{p:?}");
    }

    #[test]
    fn an_unclosed_placeholder_stops_at_the_next_one_or_the_line_end() {
        let s = scan("A {{1} b {{2}} c");
        assert_eq!(s.placeholders().collect::<Vec<_>>(), vec!["2"]);
        assert_eq!(s.problems.len(), 1);
        let s = scan("A {{1\n}} b");
        assert_eq!(s.problems.len(), 2, "{:?}", s.problems);
    }

    #[test]
    fn malformed_text_stays_in_the_pieces() {
        let s = scan("a {{ x }} b {{y}}");
        let text: String = s
            .pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => (*t).to_owned(),
                Piece::Placeholder(n) => format!("{{{{{n}}}}}"),
            })
            .collect();
        assert_eq!(text, "a {{ x }} b {{y}}");
    }

    #[test]
    fn names_follow_each_channels_rules() {
        use ChannelKind::*;
        assert_eq!(classify(Whatsapp, "1"), Ok(Style::Positional(1)));
        assert_eq!(classify(Whatsapp, "12"), Ok(Style::Positional(12)));
        assert_eq!(classify(Whatsapp, "first_name"), Ok(Style::Named));
        assert!(classify(Whatsapp, "01").unwrap_err().contains("{{1}}"));
        assert!(classify(Whatsapp, "0").unwrap_err().contains("starts at"));
        assert!(classify(Whatsapp, "99999999999").is_err());
        assert!(
            classify(Whatsapp, "FirstName")
                .unwrap_err()
                .contains("lowercase")
        );
        assert!(classify(Whatsapp, "address2").is_err());
        assert!(classify(Whatsapp, "_x").is_err());
        assert_eq!(classify(Sms, "address2"), Ok(Style::Named));
        assert_eq!(classify(Viber, "orderId"), Ok(Style::Named));
        assert_eq!(classify(Viber, "1"), Ok(Style::Named));
        assert!(classify(Viber, &"x".repeat(51)).unwrap_err().contains("50"));
    }
}
