//! Device identity names (`car54._device.cars.example`).
//!
//! A name arrives from attackers (User-Name) and from operators (policy files), so it is
//! validated once, normalised (lower case, no trailing dot) and then compared as bytes.

/// Longest presentation-form DNS name without the trailing dot (RFC 1035 limit).
pub const MAX_NAME_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// Why a string is not a device identity name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Nothing left once the one trailing dot is removed.
    #[error("empty name")]
    Empty,
    /// Longer than [`MAX_NAME_LEN`] bytes (its length given).
    #[error("name is {0} bytes, longer than {MAX_NAME_LEN}")]
    TooLong(usize),
    /// Two dots in a row, a leading dot, or two trailing dots.
    #[error("empty label (two dots in a row, or a leading dot)")]
    EmptyLabel,
    /// A label longer than DNS allows, 63 bytes (the label given).
    #[error("label {0:?} is longer than {MAX_LABEL_LEN} bytes")]
    LabelTooLong(String),
    /// The first character that is not an ASCII letter or digit, `-`, `_` or a dot. Any
    /// non-ASCII character is one: no Unicode look-alike of a name gets through.
    #[error("character {0:?} is not allowed in a DNS name")]
    BadCharacter(char),
    /// A label that starts or ends with `-` (the label given), as host names may not.
    #[error("label {0:?} starts or ends with '-'")]
    HyphenAtLabelEdge(String),
    /// One label only (`localhost`): a device name lies under some organisation's zone.
    #[error("a device name needs at least two labels")]
    SingleLabel,
    /// Only digits between the dots: reads as an IPv4 address, which must never pass for
    /// a device name.
    #[error("an IP address is not a device name")]
    IpAddress,
}

/// Validates `input` as a device name and returns its normalised form.
///
/// Allowed: letters, digits, '-' inside labels and '_' (DANE uses `_device`), at least two
/// labels. One trailing dot is accepted and removed; case is folded to lower case.
pub fn normalize(input: &str) -> Result<String, NameError> {
    let mut buf = [0u8; MAX_NAME_LEN];
    normalize_into(input, &mut buf).map(str::to_owned)
}

/// Like [`normalize`] but writes into a caller buffer, so the request path never allocates.
/// One pass over the bytes: copy, fold case, and check each label as it ends.
pub fn normalize_into<'b>(input: &str, buf: &'b mut [u8; MAX_NAME_LEN]) -> Result<&'b str, NameError> {
    let trimmed = input.strip_suffix('.').unwrap_or(input).as_bytes();
    if trimmed.is_empty() {
        return Err(NameError::Empty);
    }
    if trimmed.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(trimmed.len()));
    }
    let label_text = |start: usize, end: usize| String::from_utf8_lossy(&trimmed[start..end]).into_owned();
    let (mut labels, mut start, mut all_numeric) = (0, 0, true);
    for (i, &b) in trimmed.iter().enumerate() {
        if b != b'.' {
            if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                // The first character of the input that is not allowed, as a char.
                let c = input[i..].chars().next().unwrap_or('?');
                return Err(NameError::BadCharacter(c));
            }
            all_numeric &= b.is_ascii_digit();
            buf[i] = b.to_ascii_lowercase();
            if i + 1 < trimmed.len() {
                continue;
            }
        } else {
            buf[i] = b;
        }
        // A label ends here (at a dot, or at the last byte).
        let end = if b == b'.' { i } else { i + 1 };
        labels += 1;
        if end == start {
            return Err(NameError::EmptyLabel);
        }
        if end - start > MAX_LABEL_LEN {
            return Err(NameError::LabelTooLong(label_text(start, end)));
        }
        if trimmed[start] == b'-' || trimmed[end - 1] == b'-' {
            return Err(NameError::HyphenAtLabelEdge(label_text(start, end)));
        }
        start = i + 1;
    }
    if trimmed.last() == Some(&b'.') {
        // "a.b." with the trailing dot removed still ending in a dot: "a.b.."
        return Err(NameError::EmptyLabel);
    }
    if all_numeric {
        return Err(NameError::IpAddress);
    }
    if labels < 2 {
        return Err(NameError::SingleLabel);
    }
    // Only ASCII was accepted above, so this cannot fail.
    std::str::from_utf8(&buf[..trimmed.len()]).map_err(|_| NameError::BadCharacter('?'))
}

/// The host that serves a PKIX-CD name's CA certificates: the labels right of the first
/// `_label`, underscore dropped (`car54._device.cars.example` -> `device.cars.example`).
pub fn authority_host(name: &str) -> Option<String> {
    let mut labels = name.split('.');
    for label in labels.by_ref() {
        if let Some(rest) = label.strip_prefix('_') {
            let tail: Vec<&str> = labels.collect();
            if rest.is_empty() || tail.is_empty() {
                return None;
            }
            return Some(format!("{rest}.{}", tail.join(".")));
        }
    }
    None
}

/// The domain of the organisation that publishes a device name: the labels right of its
/// first `_label` (`car54._device.cars.example` -> `cars.example`), or, for a name without
/// one, its parent. What accounting attributes a session to.
pub fn organisation(name: &str) -> Option<&str> {
    let mut rest = name;
    while let Some((label, tail)) = rest.split_once('.') {
        if label.starts_with('_') {
            return Some(tail);
        }
        rest = tail;
    }
    name.split_once('.').map(|(_, parent)| parent).filter(|p| p.contains('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_and_trailing_dot() {
        assert_eq!(normalize("Car54._Device.Cars.Example.").unwrap(), "car54._device.cars.example");
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(normalize(""), Err(NameError::Empty));
        assert_eq!(normalize("."), Err(NameError::Empty));
        assert_eq!(normalize("a..b"), Err(NameError::EmptyLabel));
        assert_eq!(normalize(".a.b"), Err(NameError::EmptyLabel));
        assert_eq!(normalize("dev 1.example.net"), Err(NameError::BadCharacter(' ')));
        assert_eq!(normalize("dev1/x.example"), Err(NameError::BadCharacter('/')));
        assert_eq!(normalize("192.168.1.10"), Err(NameError::IpAddress));
        assert_eq!(normalize("localhost"), Err(NameError::SingleLabel));
        assert_eq!(normalize("-a.example"), Err(NameError::HyphenAtLabelEdge("-a".into())));
        assert!(matches!(normalize(&format!("{}.example", "a".repeat(64))), Err(NameError::LabelTooLong(_))));
        let long = vec!["abcdefghi"; 30].join(".");
        assert!(matches!(normalize(&long), Err(NameError::TooLong(_))));
        assert!(matches!(normalize("caf\u{e9}.example"), Err(NameError::BadCharacter(_))));
    }

    #[test]
    fn authority_host_drops_the_underscore_label() {
        assert_eq!(authority_host("car54._device.cars.example").as_deref(), Some("device.cars.example"));
        assert_eq!(authority_host("a.b._device.example.net").as_deref(), Some("device.example.net"));
        assert_eq!(authority_host("car54.device.cars.example"), None);
        assert_eq!(authority_host("car54._device"), None);
    }

    #[test]
    fn organisation_is_what_follows_the_underscore_label() {
        assert_eq!(organisation("car54._device.cars.example"), Some("cars.example"));
        assert_eq!(organisation("a.b._device.example.net"), Some("example.net"));
        assert_eq!(organisation("meter7.meters.example"), Some("meters.example"));
        assert_eq!(organisation("meters.example"), None, "a bare domain names no organisation above it");
    }
}
