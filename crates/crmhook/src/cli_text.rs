//! Text from outside (a CRM's event, a receiver's answer, a name, an error the server quotes)
//! as the CLI prints it to a terminal: control characters, and the characters that reorder or
//! hide text, shown as visible escapes, never sent.

use std::borrow::Cow;

/// Whether `c` reorders or hides text (`crmhook_core::name::hides_text`: the bidi controls,
/// the zero-width characters, …).
fn invisible(c: char) -> bool {
    crmhook_core::name::hides_text(c)
}

/// Text that came from outside (a CRM's event, a receiver's answer, a name an admin gave, an
/// error the server quotes) as it may go to a terminal: every control character (C0, DEL, C1)
/// is written as a visible escape, `\u{1b}`, so that none is taken as a command (`ESC [2J`,
/// `ESC ]0;title BEL`) or breaks a line of a table, and so is every character that reorders
/// or hides text (`crmhook_core::name::hides_text`: `\u{202e}`, `\u{200b}`), so that what the operator reads is
/// what was sent. Other text is left as it is.
pub(crate) fn visible(text: &str) -> Cow<'_, str> {
    escaped(text, |_| true)
}

/// The same for a block of lines (a body): line feeds and tabs are kept, every other control
/// character escaped. `say!` passes every line it prints through this.
pub(crate) fn visible_lines(text: &str) -> Cow<'_, str> {
    escaped(text, |c| !matches!(c, '\n' | '\t'))
}

fn escaped(text: &str, escape: impl Fn(char) -> bool) -> Cow<'_, str> {
    let hidden = |c: char| (c.is_control() && escape(c)) || invisible(c);
    rewritten(text, hidden, |c| format!("\\u{{{:x}}}", u32::from(c))).map_or(Cow::Borrowed(text), Cow::Owned)
}

/// `text` with each character `hide` picks written as `show` writes it; `None` when it has none
/// (the text is fine as it is).
fn rewritten(text: &str, hide: impl Fn(char) -> bool, show: impl Fn(char) -> String) -> Option<String> {
    if !text.chars().any(&hide) {
        return None;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if hide(c) {
            out.push_str(&show(c));
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// JSON text with the control characters serde_json writes as they are (it escapes C0 only)
/// escaped too: DEL and C1 as `\u007f` … `\u009f`; and the characters that reorder or hide
/// text (`crmhook_core::name::hides_text`) as well, `\u202e` (one beyond U+FFFF as its two UTF-16 halves,
/// `\udb40\udc41`). They can only be inside strings, so the JSON means the same, and a terminal
/// shows it without acting on any of it, in the order it is written.
pub(crate) fn json_escaped(text: String) -> String {
    let kept_by_serde = |c: char| matches!(c, '\u{7f}'..='\u{9f}') || invisible(c);
    let show = |c: char| c.encode_utf16(&mut [0; 2]).iter().map(|half| format!("\\u{half:04x}")).collect();
    rewritten(&text, kept_by_serde, show).unwrap_or(text)
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
    fn characters_that_reorder_or_hide_text_are_shown_too() {
        // "invoice_fdp.exe" that a terminal draws as "invoice_exe.pdf", a zero-width space, a
        // byte order mark, a soft hyphen, an isolate and a tag character (U+E0041, a hidden "A").
        let hostile = "invoice_\u{202e}fdp.exe a\u{200b}dmin \u{feff}x\u{ad}y \u{2067}z\u{2069}\u{e0041}\u{2028}";
        let shown = r"invoice_\u{202e}fdp.exe a\u{200b}dmin \u{feff}x\u{ad}y \u{2067}z\u{2069}\u{e0041}\u{2028}";
        assert_eq!(visible(hostile), shown);
        assert_eq!(visible_lines(hostile), shown);
        for c in ['\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{2066}', '\u{2068}', '\u{200c}', '\u{200d}'] {
            assert_eq!(visible(&c.to_string()), format!("\\u{{{:x}}}", u32::from(c)));
        }
        for c in ['\u{200e}', '\u{200f}', '\u{2060}', '\u{61c}', '\u{3164}', '\u{e0001}', '\u{e007f}'] {
            assert_ne!(visible(&c.to_string()), c.to_string(), "{:x}", u32::from(c));
        }
        // Letters of any script, emoji and their variation selector are text: left as they are.
        let text = "Müller, Ελένη, 東京, שלום, مرحبا, ❤\u{fe0f} 👍";
        assert!(matches!(visible(text), Cow::Borrowed(_)), "{}", visible(text));
        assert_eq!(s(&json!("a\u{202e}b")), r"a\u{202e}b");
    }

    #[test]
    fn json_output_escapes_what_serde_leaves_and_means_the_same() {
        let v = json!({"recordId": "r\u{1b}[31m\u{7}\u{7f}\u{85}\u{9f}\u{a0}é"});
        let text = json_escaped(serde_json::to_string_pretty(&v).expect("json"));
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text}");
        assert!(text.contains(r"\u001b[31m\u0007\u007f\u0085\u009f"), "{text}");
        assert_eq!(serde_json::from_str::<Value>(&text).expect("still JSON"), v);
    }

    #[test]
    fn json_output_escapes_what_reorders_or_hides_text_and_means_the_same() {
        let v = json!({"name": "billing-\u{202e}fdp.exe", "note": "a\u{200b}b\u{feff}\u{2066}c\u{2069}\u{e0041}", "ok": "❤\u{fe0f}"});
        let text = json_escaped(serde_json::to_string(&v).expect("json"));
        let want = "{\"name\":\"billing-\\u202efdp.exe\",\"note\":\"a\\u200bb\\ufeff\\u2066c\\u2069\\udb40\\udc41\",\"ok\":\"❤\u{fe0f}\"}";
        assert_eq!(text, want);
        assert_eq!(serde_json::from_str::<Value>(&text).expect("still JSON"), v);
    }
}
