//! The one rule for the names people give things: a target's, a source's, an API key's. A name
//! is shown as it is in the console and in the CLI's tables, so it holds no control character
//! (C0, DEL or C1: a terminal takes `ESC [2J` or `ESC ]0;…` as a command, not as text).

/// `text` trimmed, if that is 1 to `max` characters without a control character.
pub fn checked(text: &str, max: usize) -> Option<&str> {
    let name = text.trim();
    let fits = !name.is_empty() && name.chars().count() <= max;
    (fits && !name.chars().any(char::is_control)).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::checked;

    #[test]
    fn a_name_is_trimmed_and_holds_no_control_character() {
        assert_eq!(checked("  crm eu  ", 10), Some("crm eu"));
        assert_eq!(checked("é", 1), Some("é"));
        assert_eq!(checked("ab", 1), None);
        assert_eq!(checked(" \t\n", 10), None);
        for bad in ["a\u{0}b", "a\tb", "a\nb", "a\u{1b}[31mb", "a\u{7f}b", "a\u{85}b", "a\u{9b}b"] {
            assert_eq!(checked(bad, 100), None, "{bad:?}");
        }
    }
}
