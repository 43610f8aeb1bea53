//! `data:` URLs with base64 payloads (RFC 2397), as GAN Dissection's client sends masks
//! and receives images.

use base64::Engine as _;

/// Why a string is not a base64 image data URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataUrlError {
    /// Not `data:image/…;base64,…`; holds the start of what came.
    #[error("expected `data:image/…;base64,…`, got `{0}`")]
    NotImageDataUrl(String),
    #[error("bad base64: {0}")]
    Base64(String),
}

/// `data:<mime>;base64,<bytes>`.
pub fn encode(mime: &str, bytes: &[u8]) -> String {
    format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The MIME type and decoded bytes of `data:image/<type>;base64,<payload>` (whitespace
/// around the payload is ignored).
pub fn decode_image(url: &str) -> Result<(&str, Vec<u8>), DataUrlError> {
    let (mime, payload) = url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"))
        .filter(|(mime, _)| mime.starts_with("image/"))
        .ok_or_else(|| DataUrlError::NotImageDataUrl(url.chars().take(40).collect()))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload.trim())
        .map_err(|e| DataUrlError::Base64(e.to_string()))?;
    Ok((mime, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_urls_round_trip_and_others_are_refused() {
        let url = encode("image/png", b"\x89PNG\r\n");
        assert_eq!(url, "data:image/png;base64,iVBORw0K");
        assert_eq!(
            decode_image(&url).unwrap(),
            ("image/png", b"\x89PNG\r\n".to_vec())
        );
        assert_eq!(
            decode_image("data:image/jpeg;base64, /9g= \n").unwrap(),
            ("image/jpeg", vec![0xff, 0xd8])
        );
        for bad in [
            "iVBORw0K",
            "data:text/plain;base64,aGk=",
            "data:image/png,raw",
        ] {
            assert!(
                matches!(decode_image(bad), Err(DataUrlError::NotImageDataUrl(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            decode_image("data:image/png;base64,@@@"),
            Err(DataUrlError::Base64(_))
        ));
    }
}
