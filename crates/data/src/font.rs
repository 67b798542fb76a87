//! A tiny bitmap font for the labels of [`grid`](crate::grid)'s plots.
//!
//! Every printable ASCII character (`0x20..=0x7E`) has a glyph of
//! [`GLYPH_WIDTH`] × [`GLYPH_HEIGHT`] pixels: rows 0–6 hold capitals, digits
//! and the x-height letters (baseline under row 6), row 7 the descenders of
//! `g j p q y`. The shapes are the classic 5 × 7 dot-matrix ones of character
//! LCDs. Text is drawn one glyph every [`ADVANCE`] pixels, so a string of `n`
//! characters is [`text_width`]`(s)` = `6n − 1` pixels wide. Anything outside
//! printable ASCII is drawn as `?`.

/// Width of a glyph in pixels.
pub const GLYPH_WIDTH: usize = 5;
/// Height of a glyph in pixels, descender row included.
pub const GLYPH_HEIGHT: usize = 8;
/// Horizontal distance from one glyph to the next (one blank column).
pub const ADVANCE: usize = GLYPH_WIDTH + 1;
/// Rows above the baseline: the height of capitals and digits.
pub const CAP_HEIGHT: usize = 7;

/// The first character with a glyph (space).
pub const FIRST: char = ' ';
/// The last character with a glyph (tilde).
pub const LAST: char = '~';

/// One glyph per character from [`FIRST`] to [`LAST`], top row first; in
/// each row bit 4 is the leftmost pixel and bit 0 the rightmost.
pub const GLYPHS: [[u8; GLYPH_HEIGHT]; 95] = [
    [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000], // 0x20 ' '
    [0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00000, 0b00100, 0b00000], // 0x21 '!'
    [0b01010, 0b01010, 0b01010, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000], // 0x22 '"'
    [0b01010, 0b01010, 0b11111, 0b01010, 0b11111, 0b01010, 0b01010, 0b00000], // 0x23 '#'
    [0b00100, 0b01111, 0b10100, 0b01110, 0b00101, 0b11110, 0b00100, 0b00000], // 0x24 '$'
    [0b11000, 0b11001, 0b00010, 0b00100, 0b01000, 0b10011, 0b00011, 0b00000], // 0x25 '%'
    [0b01100, 0b10010, 0b10100, 0b01000, 0b10101, 0b10010, 0b01101, 0b00000], // 0x26 '&'
    [0b00100, 0b00100, 0b00100, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000], // 0x27 '\''
    [0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010, 0b00000], // 0x28 '('
    [0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000, 0b00000], // 0x29 ')'
    [0b00000, 0b00100, 0b10101, 0b01110, 0b10101, 0b00100, 0b00000, 0b00000], // 0x2a '*'
    [0b00000, 0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0b00000, 0b00000], // 0x2b '+'
    [0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b00100, 0b01000, 0b00000], // 0x2c ','
    [0b00000, 0b00000, 0b00000, 0b11111, 0b00000, 0b00000, 0b00000, 0b00000], // 0x2d '-'
    [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b01100, 0b00000], // 0x2e '.'
    [0b00000, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b00000, 0b00000], // 0x2f '/'
    [0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110, 0b00000], // 0x30 '0'
    [0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110, 0b00000], // 0x31 '1'
    [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111, 0b00000], // 0x32 '2'
    [0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110, 0b00000], // 0x33 '3'
    [0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010, 0b00000], // 0x34 '4'
    [0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110, 0b00000], // 0x35 '5'
    [0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110, 0b00000], // 0x36 '6'
    [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00000], // 0x37 '7'
    [0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110, 0b00000], // 0x38 '8'
    [0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100, 0b00000], // 0x39 '9'
    [0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b01100, 0b00000, 0b00000], // 0x3a ':'
    [0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b00100, 0b01000, 0b00000], // 0x3b ';'
    [0b00010, 0b00100, 0b01000, 0b10000, 0b01000, 0b00100, 0b00010, 0b00000], // 0x3c '<'
    [0b00000, 0b00000, 0b11111, 0b00000, 0b11111, 0b00000, 0b00000, 0b00000], // 0x3d '='
    [0b01000, 0b00100, 0b00010, 0b00001, 0b00010, 0b00100, 0b01000, 0b00000], // 0x3e '>'
    [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b00000, 0b00100, 0b00000], // 0x3f '?'
    [0b01110, 0b10001, 0b00001, 0b01101, 0b10101, 0b10101, 0b01110, 0b00000], // 0x40 '@'
    [0b01110, 0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b00000], // 0x41 'A'
    [0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110, 0b00000], // 0x42 'B'
    [0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110, 0b00000], // 0x43 'C'
    [0b11100, 0b10010, 0b10001, 0b10001, 0b10001, 0b10010, 0b11100, 0b00000], // 0x44 'D'
    [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111, 0b00000], // 0x45 'E'
    [0b11111, 0b10000, 0b10000, 0b11100, 0b10000, 0b10000, 0b10000, 0b00000], // 0x46 'F'
    [0b01110, 0b10001, 0b10000, 0b10000, 0b10011, 0b10001, 0b01110, 0b00000], // 0x47 'G'
    [0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001, 0b00000], // 0x48 'H'
    [0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110, 0b00000], // 0x49 'I'
    [0b00111, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100, 0b00000], // 0x4a 'J'
    [0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001, 0b00000], // 0x4b 'K'
    [0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111, 0b00000], // 0x4c 'L'
    [0b10001, 0b11011, 0b10101, 0b10001, 0b10001, 0b10001, 0b10001, 0b00000], // 0x4d 'M'
    [0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001, 0b00000], // 0x4e 'N'
    [0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110, 0b00000], // 0x4f 'O'
    [0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000, 0b00000], // 0x50 'P'
    [0b01110, 0b10001, 0b10001, 0b10001, 0b10101, 0b10010, 0b01101, 0b00000], // 0x51 'Q'
    [0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001, 0b00000], // 0x52 'R'
    [0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110, 0b00000], // 0x53 'S'
    [0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00000], // 0x54 'T'
    [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110, 0b00000], // 0x55 'U'
    [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00000], // 0x56 'V'
    [0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b11011, 0b10001, 0b00000], // 0x57 'W'
    [0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001, 0b00000], // 0x58 'X'
    [0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100, 0b00100, 0b00000], // 0x59 'Y'
    [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b11111, 0b00000], // 0x5a 'Z'
    [0b01110, 0b01000, 0b01000, 0b01000, 0b01000, 0b01000, 0b01110, 0b00000], // 0x5b '['
    [0b00000, 0b10000, 0b01000, 0b00100, 0b00010, 0b00001, 0b00000, 0b00000], // 0x5c '\\'
    [0b01110, 0b00010, 0b00010, 0b00010, 0b00010, 0b00010, 0b01110, 0b00000], // 0x5d ']'
    [0b00100, 0b01010, 0b10001, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000], // 0x5e '^'
    [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b11111, 0b00000], // 0x5f '_'
    [0b01000, 0b00100, 0b00010, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000], // 0x60 '`'
    [0b00000, 0b00000, 0b01110, 0b00001, 0b01111, 0b10001, 0b01111, 0b00000], // 0x61 'a'
    [0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b11110, 0b00000], // 0x62 'b'
    [0b00000, 0b00000, 0b01110, 0b10000, 0b10000, 0b10001, 0b01110, 0b00000], // 0x63 'c'
    [0b00001, 0b00001, 0b01101, 0b10011, 0b10001, 0b10001, 0b01111, 0b00000], // 0x64 'd'
    [0b00000, 0b00000, 0b01110, 0b10001, 0b11111, 0b10000, 0b01110, 0b00000], // 0x65 'e'
    [0b00110, 0b01001, 0b01000, 0b11100, 0b01000, 0b01000, 0b01000, 0b00000], // 0x66 'f'
    [0b00000, 0b00000, 0b01111, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110], // 0x67 'g'
    [0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001, 0b00000], // 0x68 'h'
    [0b00100, 0b00000, 0b01100, 0b00100, 0b00100, 0b00100, 0b01110, 0b00000], // 0x69 'i'
    [0b00010, 0b00000, 0b00110, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100], // 0x6a 'j'
    [0b01000, 0b01000, 0b01001, 0b01010, 0b01100, 0b01010, 0b01001, 0b00000], // 0x6b 'k'
    [0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110, 0b00000], // 0x6c 'l'
    [0b00000, 0b00000, 0b11010, 0b10101, 0b10101, 0b10001, 0b10001, 0b00000], // 0x6d 'm'
    [0b00000, 0b00000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001, 0b00000], // 0x6e 'n'
    [0b00000, 0b00000, 0b01110, 0b10001, 0b10001, 0b10001, 0b01110, 0b00000], // 0x6f 'o'
    [0b00000, 0b00000, 0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000], // 0x70 'p'
    [0b00000, 0b00000, 0b01111, 0b10001, 0b10001, 0b01111, 0b00001, 0b00001], // 0x71 'q'
    [0b00000, 0b00000, 0b10110, 0b11001, 0b10000, 0b10000, 0b10000, 0b00000], // 0x72 'r'
    [0b00000, 0b00000, 0b01110, 0b10000, 0b01110, 0b00001, 0b11110, 0b00000], // 0x73 's'
    [0b01000, 0b01000, 0b11100, 0b01000, 0b01000, 0b01001, 0b00110, 0b00000], // 0x74 't'
    [0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b10011, 0b01101, 0b00000], // 0x75 'u'
    [0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00000], // 0x76 'v'
    [0b00000, 0b00000, 0b10001, 0b10001, 0b10101, 0b10101, 0b01010, 0b00000], // 0x77 'w'
    [0b00000, 0b00000, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b00000], // 0x78 'x'
    [0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110], // 0x79 'y'
    [0b00000, 0b00000, 0b11111, 0b00010, 0b00100, 0b01000, 0b11111, 0b00000], // 0x7a 'z'
    [0b00010, 0b00100, 0b00100, 0b01000, 0b00100, 0b00100, 0b00010, 0b00000], // 0x7b '{'
    [0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00000], // 0x7c '|'
    [0b01000, 0b00100, 0b00100, 0b00010, 0b00100, 0b00100, 0b01000, 0b00000], // 0x7d '}'
    [0b00000, 0b00000, 0b00000, 0b01101, 0b10010, 0b00000, 0b00000, 0b00000], // 0x7e '~'
];

/// The glyph of `c`; `?`'s for a character outside [`FIRST`]`..=`[`LAST`].
pub fn glyph(c: char) -> &'static [u8; GLYPH_HEIGHT] {
    let index = if (FIRST..=LAST).contains(&c) {
        c as usize
    } else {
        '?' as usize
    };
    &GLYPHS[index - FIRST as usize]
}

/// Whether pixel `(x, y)` of `c`'s glyph is set (`x` to the right, `y` down);
/// false outside the glyph.
pub fn is_set(c: char, x: usize, y: usize) -> bool {
    x < GLYPH_WIDTH
        && glyph(c)
            .get(y)
            .is_some_and(|row| (row >> (GLYPH_WIDTH - 1 - x)) & 1 == 1)
}

/// The width in pixels of `text` drawn with this font: [`ADVANCE`] per
/// character less the blank column after the last; 0 for the empty string.
pub fn text_width(text: &str) -> usize {
    (text.chars().count() * ADVANCE).saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixels(c: char) -> usize {
        glyph(c).iter().map(|row| row.count_ones() as usize).sum()
    }

    #[test]
    fn every_printable_character_has_a_glyph() {
        assert_eq!(GLYPHS.len(), LAST as usize - FIRST as usize + 1);
        for c in '!'..='~' {
            assert!(pixels(c) > 0, "{c:?} is blank");
        }
        assert_eq!(pixels(' '), 0);
        // Rows fit in GLYPH_WIDTH bits.
        assert!(GLYPHS.iter().flatten().all(|&row| row < 1 << GLYPH_WIDTH));
        // Only descenders use the last row.
        for c in FIRST..=LAST {
            assert_eq!(glyph(c)[GLYPH_HEIGHT - 1] != 0, "gjpqy".contains(c), "{c:?}");
        }
    }

    #[test]
    fn glyphs_are_distinct() {
        assert_ne!(glyph('0'), glyph('O'));
        assert_ne!(glyph('1'), glyph('l'));
        assert_ne!(glyph('5'), glyph('S'));
        let mut all: Vec<_> = GLYPHS.to_vec();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), GLYPHS.len(), "two characters share a glyph");
    }

    #[test]
    fn unknown_characters_and_widths() {
        assert_eq!(glyph('é'), glyph('?'));
        assert_eq!(glyph('\n'), glyph('?'));
        // '-' is a horizontal bar through the middle; '|' a vertical one.
        assert!((0..GLYPH_WIDTH).all(|x| is_set('-', x, 3)));
        assert!((0..CAP_HEIGHT).all(|y| is_set('|', 2, y)));
        assert!(!is_set('A', GLYPH_WIDTH, 0) && !is_set('A', 0, GLYPH_HEIGHT));
        assert_eq!(text_width(""), 0);
        assert_eq!(text_width("a"), 5);
        assert_eq!(text_width("0.25"), 23);
    }
}
