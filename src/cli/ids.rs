//! Parsing id lists such as `0..8,12,20..22` (ranges exclude their end, as in Rust).

/// The most ids one spec may expand to, so a typo like `0..1000000000` fails fast.
pub const MAX_IDS: usize = 100_000;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IdSpecError {
    #[error("`{0}` is not an id or a range like 0..8")]
    Bad(String),
    #[error("range `{0}` is empty (the end is excluded)")]
    Empty(String),
    #[error("the spec expands to more than {MAX_IDS} ids")]
    TooMany,
}

/// Parses a comma list of ids and `a..b` ranges, keeping the order given.
pub fn parse_id_spec(spec: &str) -> Result<Vec<u64>, IdSpecError> {
    let mut ids = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || IdSpecError::Bad(part.to_string());
        if let Some((start, end)) = part.split_once("..") {
            let start: u64 = start.trim().parse().map_err(|_| bad())?;
            let end: u64 = end.trim().parse().map_err(|_| bad())?;
            if end <= start {
                return Err(IdSpecError::Empty(part.to_string()));
            }
            if (end - start) as usize > MAX_IDS - ids.len().min(MAX_IDS) {
                return Err(IdSpecError::TooMany);
            }
            ids.extend(start..end);
        } else {
            ids.push(part.parse().map_err(|_| bad())?);
        }
        if ids.len() > MAX_IDS {
            return Err(IdSpecError::TooMany);
        }
    }
    if ids.is_empty() {
        return Err(IdSpecError::Bad(spec.to_string()));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_ranges_expand_in_order() {
        assert_eq!(parse_id_spec("3,0..3, 10").unwrap(), vec![3, 0, 1, 2, 10]);
    }

    #[test]
    fn bad_empty_and_huge_specs_are_errors() {
        assert_eq!(parse_id_spec("x"), Err(IdSpecError::Bad("x".into())));
        assert_eq!(
            parse_id_spec("5..5"),
            Err(IdSpecError::Empty("5..5".into()))
        );
        assert_eq!(parse_id_spec("0..1000000000"), Err(IdSpecError::TooMany));
        assert!(parse_id_spec("").is_err());
        assert!(parse_id_spec("-1").is_err());
    }
}
