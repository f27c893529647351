//! The protobuf codec of the `dom.v1` services: prost's, except that a message that cannot be
//! decoded is the caller's mistake, so it answers INVALID_ARGUMENT rather than the INTERNAL
//! that pages an operator. PushStock frames go through the same decoder.
//!
//! The generated clients use it too; for them a reply that cannot be decoded is equally
//! INVALID_ARGUMENT, with a message that says the reply was at fault.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

/// prost encoding, and decoding whose failures are INVALID_ARGUMENT.
#[derive(Debug, Clone)]
pub struct ApiCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for ApiCodec<T, U> {
    fn default() -> Self {
        Self { _pd: PhantomData }
    }
}

impl<T, U> Codec for ApiCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ApiDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ApiDecoder { _pd: PhantomData }
    }
}

/// Decodes one message; a malformed one is INVALID_ARGUMENT naming what prost could not read.
#[derive(Debug, Clone)]
pub struct ApiDecoder<U> {
    _pd: PhantomData<U>,
}

impl<U: Message + Default> Decoder for ApiDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|e| {
            Status::invalid_argument(format!(
                "message: is not a valid protobuf encoding of the request or reply ({e})"
            ))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}
