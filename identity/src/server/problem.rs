//! `application/problem+json` errors (RFC 9457) with one stable `type` URI per kind, so
//! clients branch on the type rather than on the wording.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The base of every problem type URI.
pub const TYPE_BASE: &str = "https://example.invalid/swarmguard/problems/";

/// The kinds of error the API reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The body is not JSON, or has the wrong shape or types (400).
    MalformedRequest,
    /// The credential breaks the data model or the issuer's rules (400).
    InvalidCredential,
    /// The input to verify is not a credential or presentation at all (400).
    NotACredential,
    /// No or a wrong bearer token (401).
    Unauthorized,
    /// No such credential, list or route (404).
    NotFound,
    /// The id is taken, or a revoked credential cannot change status (409).
    Conflict,
    /// The body is larger than `server.body_limit` (413).
    PayloadTooLarge,
    /// Something failed on our side (500).
    Internal,
}

impl Kind {
    pub fn slug(self) -> &'static str {
        match self {
            Kind::MalformedRequest => "malformed-request",
            Kind::InvalidCredential => "invalid-credential",
            Kind::NotACredential => "not-a-credential",
            Kind::Unauthorized => "unauthorized",
            Kind::NotFound => "not-found",
            Kind::Conflict => "conflict",
            Kind::PayloadTooLarge => "payload-too-large",
            Kind::Internal => "internal",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Kind::MalformedRequest | Kind::InvalidCredential | Kind::NotACredential => {
                StatusCode::BAD_REQUEST
            }
            Kind::Unauthorized => StatusCode::UNAUTHORIZED,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::Conflict => StatusCode::CONFLICT,
            Kind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Kind::MalformedRequest => "Malformed request",
            Kind::InvalidCredential => "Invalid credential",
            Kind::NotACredential => "Not a credential",
            Kind::Unauthorized => "Unauthorized",
            Kind::NotFound => "Not found",
            Kind::Conflict => "Conflict",
            Kind::PayloadTooLarge => "Payload too large",
            Kind::Internal => "Internal error",
        }
    }
}

/// One problem response.
#[derive(Debug)]
pub struct Problem {
    pub kind: Kind,
    pub detail: String,
}

impl Problem {
    pub fn new(kind: Kind, detail: impl Into<String>) -> Problem {
        Problem {
            kind,
            detail: detail.into(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        if self.kind == Kind::Internal {
            tracing::error!(detail = %self.detail, "internal error");
        }
        let status = self.kind.status();
        let body = serde_json::json!({
            "type": format!("{TYPE_BASE}{}", self.kind.slug()),
            "title": self.kind.title(),
            "status": status.as_u16(),
            "detail": self.detail,
        });
        let mut response = (status, body.to_string()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.kind == Kind::Unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
