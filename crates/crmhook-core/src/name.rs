//! The one rule for the names people give things: a target's, a source's, an API key's. A name
//! is shown as it is in the console and in the CLI's tables, so it holds no control character
//! (C0, DEL or C1: a terminal takes `ESC [2J` or `ESC ]0;…` as a command, not as text), and no
//! character that reorders or hides text ([`hides_text`]: `billing-\u{202e}fdp.exe` reads as
//! `billing-exe.pdf`, `a\u{200b}dmin` as `admin`; since 2026-12-07).

/// `text` trimmed, if that is 1 to `max` characters without a control character or one that
/// hides text.
pub fn checked(text: &str, max: usize) -> Option<&str> {
    let name = text.trim();
    let fits = !name.is_empty() && name.chars().count() <= max;
    (fits && !name.chars().any(|c| c.is_control() || hides_text(c))).then_some(name)
}

/// The characters that are no control character but change what a reader sees of the text
/// around them or show as nothing at all: Unicode's format characters (`Cf`) and its
/// default-ignorable code points (drawn as nothing when not supported), but the emoji
/// variation selectors U+FE00–U+FE0F (which only choose how the character before looks), and
/// the line and paragraph separators. Among them: the bidi embeddings, overrides and isolates
/// (U+202A–U+202E, U+2066–U+2069) and marks (U+200E, U+200F, U+061C), which reorder a line;
/// the zero-width ones (U+200B–U+200D, U+2060–U+2064, U+FEFF), the soft hyphen (U+00AD), the
/// Hangul fillers and the tags (U+E0000–U+E0FFF), which hide text or make two names look alike.
const INVISIBLE: &[(char, char)] = &[
    ('\u{ad}', '\u{ad}'),
    ('\u{34f}', '\u{34f}'),
    ('\u{600}', '\u{605}'),
    ('\u{61c}', '\u{61c}'),
    ('\u{6dd}', '\u{6dd}'),
    ('\u{70f}', '\u{70f}'),
    ('\u{890}', '\u{891}'),
    ('\u{8e2}', '\u{8e2}'),
    ('\u{115f}', '\u{1160}'),
    ('\u{17b4}', '\u{17b5}'),
    ('\u{180b}', '\u{180f}'),
    ('\u{200b}', '\u{200f}'),
    ('\u{2028}', '\u{202e}'),
    ('\u{2060}', '\u{206f}'),
    ('\u{3164}', '\u{3164}'),
    ('\u{feff}', '\u{feff}'),
    ('\u{ffa0}', '\u{ffa0}'),
    ('\u{fff0}', '\u{fffb}'),
    ('\u{110bd}', '\u{110bd}'),
    ('\u{110cd}', '\u{110cd}'),
    ('\u{13430}', '\u{1343f}'),
    ('\u{1bca0}', '\u{1bca3}'),
    ('\u{1d173}', '\u{1d17a}'),
    ('\u{e0000}', '\u{e0fff}'),
];

/// The ranges of [`hides_text`], first and last included: the console's script holds the same
/// table (a test of the server's compares them).
pub fn hides_text_ranges() -> &'static [(char, char)] {
    INVISIBLE
}

/// Whether `c` reorders or hides text ([`INVISIBLE`]): the CLI and the console show it escaped,
/// and no name holds one.
pub fn hides_text(c: char) -> bool {
    INVISIBLE.iter().any(|&(first, last)| (first..=last).contains(&c))
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
        for bad in ["billing-\u{202e}fdp.exe", "a\u{200b}dmin", "x\u{2066}y\u{2069}", "\u{feff}ops", "a\u{ad}b"] {
            assert_eq!(checked(bad, 100), None, "{bad:?}");
        }
        // Emoji keep their presentation selectors; other scripts are names like any.
        for good in ["❤\u{fe0f} team", "Продажи", "営業チーム", "naïve"] {
            assert_eq!(checked(good, 100), Some(good), "{good:?}");
        }
    }
}
