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

#[cfg(test)]
mod tests {
    use super::v1::{execute_query_response::Event, Complete, ExecuteQueryResponse};
    use prost::Message;

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
