//! Request validation: every rejection is INVALID_ARGUMENT naming the field
//! and the limit, decided before anything is queued, so a rejected batch
//! writes nothing.

use super::proto::batcher::v1::{BatchWriteRequest, write_request::Operation};
use super::proto::index::v1::Consistency;
use crate::config::Limits;
use crate::sstable::{Entry, Value};
use bytes::Bytes;
use tonic::Status;

/// The `consistency` field of a read: an unknown value (a newer client's
/// level this server does not have) is refused rather than served weaker.
pub fn consistency(value: i32) -> Result<Consistency, Status> {
    Consistency::try_from(value).map_err(|_| {
        invalid(format!(
            "consistency is {value}; expected CONSISTENCY_DEFAULT (0) or CONSISTENCY_STRONG (1)"
        ))
    })
}

fn invalid(msg: String) -> Status {
    Status::invalid_argument(msg)
}

pub fn check_key(field: &str, key: &str, limits: &Limits) -> Result<(), Status> {
    if key.is_empty() {
        return Err(invalid(format!("{field} must not be empty")));
    }
    if key.len() > limits.max_key_bytes {
        return Err(invalid(format!(
            "{field} is {} bytes; the limit is {} bytes",
            key.len(),
            limits.max_key_bytes
        )));
    }
    Ok(())
}

/// Validates a whole BatchWrite and converts it to entries in request order.
pub fn batch_write(req: BatchWriteRequest, limits: &Limits) -> Result<Vec<Entry>, Status> {
    if req.writes.is_empty() {
        return Err(invalid("writes must contain at least one write".into()));
    }
    if req.writes.len() > limits.max_writes_per_batch {
        return Err(invalid(format!(
            "writes has {} entries; the limit is {} per request",
            req.writes.len(),
            limits.max_writes_per_batch
        )));
    }
    let mut total = 0usize;
    let mut entries = Vec::with_capacity(req.writes.len());
    for (i, write) in req.writes.into_iter().enumerate() {
        check_key(&format!("writes[{i}].key"), &write.key, limits)?;
        let value = match write.operation {
            None => {
                return Err(invalid(format!(
                    "writes[{i}].operation must be set (put or delete)"
                )));
            }
            Some(Operation::Delete(false)) => {
                return Err(invalid(format!("writes[{i}].delete must be true when set")));
            }
            Some(Operation::Delete(true)) => Value::Delete,
            Some(Operation::Put(value)) => {
                if value.len() > limits.max_value_bytes {
                    return Err(invalid(format!(
                        "writes[{i}].put is {} bytes; the limit is {} bytes",
                        value.len(),
                        limits.max_value_bytes
                    )));
                }
                Value::Put(value)
            }
        };
        total += write.key.len()
            + match &value {
                Value::Put(v) => v.len(),
                Value::Delete => 0,
            };
        if total > limits.max_batch_bytes {
            return Err(invalid(format!(
                "writes total more than {} bytes of keys and values (the batch limit)",
                limits.max_batch_bytes
            )));
        }
        entries.push(Entry {
            key: Bytes::from(write.key),
            value,
        });
    }
    Ok(entries)
}

pub fn batch_get_keys(keys: Vec<String>, limits: &Limits) -> Result<Vec<Bytes>, Status> {
    if keys.len() > limits.max_keys_per_get {
        return Err(invalid(format!(
            "keys has {} entries; the limit is {} per request",
            keys.len(),
            limits.max_keys_per_get
        )));
    }
    keys.into_iter()
        .enumerate()
        .map(|(i, key)| {
            check_key(&format!("keys[{i}]"), &key, limits)?;
            Ok(Bytes::from(key))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::proto::batcher::v1::WriteRequest;

    fn put(key: &str, value: &[u8]) -> WriteRequest {
        WriteRequest {
            key: key.into(),
            operation: Some(Operation::Put(value.to_vec().into())),
        }
    }

    fn rejects(writes: Vec<WriteRequest>, limits: &Limits, field: &str) {
        let err = batch_write(BatchWriteRequest { writes }, limits).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().contains(field),
            "{:?} lacks {field}",
            err.message()
        );
    }

    #[test]
    fn names_the_offending_field() {
        let l = Limits::default();
        rejects(vec![], &l, "writes");
        rejects(vec![put("a", b"1"), put("", b"1")], &l, "writes[1].key");
        rejects(vec![put(&"k".repeat(1025), b"1")], &l, "writes[0].key");
        rejects(vec![put("a", &vec![0; (1 << 20) + 1])], &l, "writes[0].put");
        let unset = WriteRequest {
            key: "a".into(),
            operation: None,
        };
        rejects(vec![unset], &l, "writes[0].operation");
        let false_delete = WriteRequest {
            key: "a".into(),
            operation: Some(Operation::Delete(false)),
        };
        rejects(vec![false_delete], &l, "writes[0].delete");
        let small = Limits {
            max_writes_per_batch: 2,
            max_batch_bytes: 10,
            ..Limits::default()
        };
        rejects(
            vec![put("a", b""), put("b", b""), put("c", b"")],
            &small,
            "writes has 3",
        );
        rejects(
            vec![put("a", b"123456"), put("b", b"123456")],
            &small,
            "batch limit",
        );
    }

    #[test]
    fn keeps_request_order_and_values() {
        let entries = batch_write(
            BatchWriteRequest {
                writes: vec![put("b", b"2"), put("a", b"")],
            },
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(entries[0].key, "b");
        assert_eq!(entries[1].value, Value::Put(Bytes::new()));
    }
}
