//! Path sanity (contract §1): requests whose path could mean something
//! different to the upstream than to the gateway are rejected with 400
//! before matching, so they never reach any upstream.

use std::fmt;

/// Why a request path was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The path does not start with `/` (e.g. `*` or authority-form).
    NotAbsolute,
    /// A `.` or `..` segment, literal or percent-encoded.
    DotSegment,
    /// `%2f` or `%5c`: a slash the gateway and the upstream would split differently.
    EncodedSlash,
    /// A raw `\`, which some servers treat as `/`.
    Backslash,
    /// A control byte or NUL, raw or encoded.
    ControlByte,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// A raw byte outside ASCII (clients percent-encode these).
    NonAscii,
    /// An overlong UTF-8 encoding (`%c0%ae` for `.`, `%e0%80%af` for
    /// `/`): decoders that accept them see a dot segment or a slash the
    /// gateway did not.
    OverlongUtf8,
}

impl PathError {
    /// The message sent in the JSON error body.
    pub fn message(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "Invalid path: must start with '/'",
            PathError::DotSegment => "Invalid path: dot segment",
            PathError::EncodedSlash => "Invalid path: encoded slash or backslash",
            PathError::Backslash => "Invalid path: backslash",
            PathError::ControlByte => "Invalid path: control character",
            PathError::BadEscape => "Invalid path: malformed percent-encoding",
            PathError::NonAscii => "Invalid path: raw non-ASCII byte",
            PathError::OverlongUtf8 => "Invalid path: overlong UTF-8 encoding",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for PathError {}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether an encoded UTF-8 lead byte followed by this continuation byte
/// starts an overlong encoding: one whose code point, whatever follows,
/// fits in fewer bytes (`C0 AE` is `.`, `E0 80 AF` is `/`). Includes the
/// obsolete 5- and 6-byte forms that old decoders still read.
fn overlong(lead: u8, next: u8) -> bool {
    let max = match lead {
        0xC0 | 0xC1 => 0xBF,
        0xE0 => 0x9F,
        0xF0 => 0x8F,
        0xF8 => 0x87,
        0xFC => 0x83,
        _ => return false,
    };
    (0x80..=max).contains(&next)
}

/// Checks a request path (without the query). Allocates nothing.
///
/// # Errors
/// The first rule the path breaks.
#[inline]
pub fn check(path: &str) -> Result<(), PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // Per segment: how many dots (raw or `%2e`) and whether anything else.
    let mut dots = 0u8;
    let mut other = false;
    // The previous byte, decoded, within the segment (0 at its start).
    let mut prev = 0u8;
    let mut i = 1;
    while i <= bytes.len() {
        let b = if i == bytes.len() { b'/' } else { bytes[i] };
        let decoded = match b {
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::BadEscape);
                };
                i += 2;
                let d = hi << 4 | lo;
                if d == b'/' || d == b'\\' {
                    return Err(PathError::EncodedSlash);
                }
                d
            }
            b'\\' => return Err(PathError::Backslash),
            // `..;x` is `..` to servers that strip path parameters.
            b';' if !other && (dots == 1 || dots == 2) => return Err(PathError::DotSegment),
            b'/' => {
                if !other && (dots == 1 || dots == 2) {
                    return Err(PathError::DotSegment);
                }
                dots = 0;
                other = false;
                prev = 0;
                i += 1;
                continue;
            }
            b if b >= 0x80 => return Err(PathError::NonAscii),
            b => b,
        };
        if decoded < 0x20 || decoded == 0x7f {
            return Err(PathError::ControlByte);
        }
        if overlong(prev, decoded) {
            return Err(PathError::OverlongUtf8);
        }
        prev = decoded;
        if decoded == b'.' {
            dots = dots.saturating_add(1);
        } else {
            other = true;
        }
        i += 1;
    }
    Ok(())
}
