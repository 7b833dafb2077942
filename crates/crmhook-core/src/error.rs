//! The one error type of this crate. The server maps it to problem+json at its edge.

/// Something a client sent breaks the rules. `Malformed` and `Shape` are the request as a whole
/// (HTTP 400); `Invalid` is a well-formed value that breaks a rule (HTTP 422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// The body is not JSON at all.
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// The body is JSON but none of the accepted shapes.
    #[error("{0}")]
    Shape(String),
    /// A well-formed value breaks a rule.
    #[error("{0}")]
    Invalid(FieldError),
}

/// A rule broken by one field, perhaps of one event among many (`index`, 0-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub index: Option<usize>,
    pub field: Option<String>,
    pub detail: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl CoreError {
    /// A 422 about `field`.
    pub fn field(field: impl Into<String>, detail: impl Into<String>) -> Self {
        CoreError::Invalid(FieldError { index: None, field: Some(field.into()), detail: detail.into() })
    }

    /// The same error, said of event number `index` of a request.
    pub fn at_index(self, index: usize) -> Self {
        match self {
            CoreError::Invalid(mut e) => {
                e.detail = format!("event {index}: {}", e.detail);
                e.index = Some(index);
                CoreError::Invalid(e)
            }
            other => other,
        }
    }
}
