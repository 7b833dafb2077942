//! Text from outside (a CRM's event, a receiver's answer, a name, an error the server quotes)
//! as the CLI prints it to a terminal: control characters shown as visible escapes, never sent.

use std::borrow::Cow;

/// Text that came from outside (a CRM's event, a receiver's answer, a name an admin gave, an
/// error the server quotes) as it may go to a terminal: every control character (C0, DEL, C1)
/// is written as a visible escape, `\u{1b}`, so that none is taken as a command (`ESC [2J`,
/// `ESC ]0;title BEL`) or breaks a line of a table. Other text is left as it is.
pub(crate) fn visible(text: &str) -> Cow<'_, str> {
    escaped(text, |_| true)
}

/// The same for a block of lines (a body): line feeds and tabs are kept, every other control
/// character escaped. `say!` passes every line it prints through this.
pub(crate) fn visible_lines(text: &str) -> Cow<'_, str> {
    escaped(text, |c| !matches!(c, '\n' | '\t'))
}

fn escaped(text: &str, escape: impl Fn(char) -> bool) -> Cow<'_, str> {
    let hidden = |c: char| c.is_control() && escape(c);
    rewritten(text, hidden, |c| format!("\\u{{{c:x}}}")).map_or(Cow::Borrowed(text), Cow::Owned)
}

/// `text` with each character `hide` picks written as `show` writes its code point; `None` when
/// it has none (the text is fine as it is).
fn rewritten(text: &str, hide: impl Fn(char) -> bool, show: impl Fn(u32) -> String) -> Option<String> {
    if !text.chars().any(&hide) {
        return None;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if hide(c) {
            out.push_str(&show(u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// JSON text with the control characters serde_json writes as they are (it escapes C0 only)
/// escaped too: DEL and C1 as `\u007f` … `\u009f`. They can only be inside strings, so the
/// JSON means the same, and a terminal shows it without acting on any of it.
pub(crate) fn json_escaped(text: String) -> String {
    let kept_by_serde = |c: char| matches!(c, '\u{7f}'..='\u{9f}');
    rewritten(&text, kept_by_serde, |c| format!("\\u{c:04x}")).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::s;
    use serde_json::{json, Value};

    #[test]
    fn control_characters_are_shown_not_sent() {
        let hostile = "r\u{1b}[31mRED\u{1b}]0;pwned\u{7}\tx\ny\r\u{7f}\u{85}\u{9b}2J é";
        assert_eq!(visible(hostile), r"r\u{1b}[31mRED\u{1b}]0;pwned\u{7}\u{9}x\u{a}y\u{d}\u{7f}\u{85}\u{9b}2J é");
        assert_eq!(visible_lines(hostile), "r\\u{1b}[31mRED\\u{1b}]0;pwned\\u{7}\tx\ny\\u{d}\\u{7f}\\u{85}\\u{9b}2J é");
        assert!(matches!(visible("plain text, tabs aside"), Cow::Borrowed(_)));
        assert_eq!(s(&json!("a\u{0}b")), r"a\u{0}b");
        assert_eq!(s(&json!(["a\u{1b}", "b"])), r"a\u{1b},b");
    }

    #[test]
    fn json_output_escapes_what_serde_leaves_and_means_the_same() {
        let v = json!({"recordId": "r\u{1b}[31m\u{7}\u{7f}\u{85}\u{9f}\u{a0}é"});
        let text = json_escaped(serde_json::to_string_pretty(&v).expect("json"));
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text}");
        assert!(text.contains(r"\u001b[31m\u0007\u007f\u0085\u009f"), "{text}");
        assert_eq!(serde_json::from_str::<Value>(&text).expect("still JSON"), v);
    }
}
