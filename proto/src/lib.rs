//! The Velostream engine contract (`velostream.engine.v1`): generated message
//! types, the `EngineService` client and server, and a few conveniences.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("velostream.engine.v1");
}

pub use v1::engine_service_client::EngineServiceClient;
pub use v1::engine_service_server::{EngineService, EngineServiceServer};

/// The largest gRPC message either side accepts (a record batch is split
/// well below this by the engine).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Arrow field metadata naming the PostgreSQL type of a column where the
/// Arrow type alone does not say it, as the type's oid in decimal: engine
/// results use it for numbers whose scale varies by value (`1700` on a
/// `Utf8` column), the gateway's catalog for `name`, `oid`, `"char"`, ...
pub const PG_TYPE_KEY: &str = "pg.type";

/// A client of the engine service that sends the cluster's shared token,
/// when there is one, with every call.
pub type EngineClient = EngineServiceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, SendToken>,
>;

/// Compares secrets without an early exit.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A shared secret kept in a file (trailing whitespace and newline
/// ignored; an empty file is an error).
pub fn read_token_file(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let token = text.trim_end();
    if token.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(token.to_string())
}

/// Adds `authorization: Bearer <token>` to each request.
#[derive(Debug, Clone, Default)]
pub struct SendToken(Option<tonic::metadata::AsciiMetadataValue>);

impl SendToken {
    /// `None`: no token is sent. Fails for a token that is not printable
    /// ASCII.
    pub fn new(token: Option<&str>) -> Result<Self, String> {
        token
            .map(|t| {
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| "the engine token must be printable ASCII".to_string())
            })
            .transpose()
            .map(Self)
    }
}

impl tonic::service::Interceptor for SendToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// The server's side: with a token, a call without it is UNAUTHENTICATED.
#[derive(Debug, Clone, Default)]
pub struct RequireToken(Option<std::sync::Arc<str>>);

impl RequireToken {
    /// `None`: every call is let through.
    pub fn new(token: Option<&str>) -> Self {
        Self(token.map(|t| format!("Bearer {t}").into()))
    }
}

impl tonic::service::Interceptor for RequireToken {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let Some(expected) = &self.0 else {
            return Ok(request);
        };
        let given = request
            .metadata()
            .get("authorization")
            .map_or(&b""[..], |v| v.as_bytes());
        if constant_time_eq(given, expected.as_bytes()) {
            Ok(request)
        } else {
            Err(tonic::Status::unauthenticated(
                "missing or wrong engine token",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::v1::{execute_query_response::Event, Complete, ExecuteQueryResponse};
    use super::{RequireToken, SendToken};
    use prost::Message;
    use tonic::service::Interceptor;

    #[test]
    fn the_token_sent_is_the_token_required() {
        let mut open = RequireToken::new(None);
        assert!(open.call(tonic::Request::new(())).is_ok());
        let mut require = RequireToken::new(Some("s3cret"));
        let sent = SendToken::new(Some("s3cret"))
            .unwrap()
            .call(tonic::Request::new(()))
            .unwrap();
        assert!(require.call(sent).is_ok());
        for wrong in [Some("s3cre"), Some("s3cret "), Some("other!"), None] {
            let sent = SendToken::new(wrong)
                .unwrap()
                .call(tonic::Request::new(()))
                .unwrap();
            let refused = require.call(sent).unwrap_err();
            assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{wrong:?}");
        }
        assert!(SendToken::new(Some("line\nbreak")).is_err());
    }

    #[test]
    fn terminal_event_round_trips() {
        let msg = ExecuteQueryResponse {
            event: Some(Event::Complete(Complete {
                rows: 3,
                command_tag: "SELECT".into(),
                reason: 1,
            })),
        };
        let decoded = ExecuteQueryResponse::decode(msg.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, msg);
    }
}
