//! The layout of subscriptions and their filters.

use serde::{Deserialize, Serialize};

use crmhook_core::subscription::{Filter, Op};
use crmhook_core::{Subscription, SubscriptionId, TargetId};

/// A subscription (`S` keys), record version 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SubscriptionV1 {
    pub id: SubscriptionId,
    pub target_id: TargetId,
    pub event_types: Vec<String>,
    pub kanban_ids: Vec<String>,
    pub field_names: Vec<String>,
    pub filters: Vec<FilterV1>,
    pub version_major: Option<u32>,
    pub created_at_ms: u64,
    pub from_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct FilterV1 {
    pub path: String,
    pub op: OpV1,
    pub value_json: String,
}

/// The filter operators, in the order of their variant index on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum OpV1 {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    In,
    Nin,
    Contains,
    Exists,
}

/// The operators in pairs, one place for both directions of the conversion.
const OPS: [(Op, OpV1); 10] = [
    (Op::Eq, OpV1::Eq),
    (Op::Ne, OpV1::Ne),
    (Op::Gt, OpV1::Gt),
    (Op::Gte, OpV1::Gte),
    (Op::Lt, OpV1::Lt),
    (Op::Lte, OpV1::Lte),
    (Op::In, OpV1::In),
    (Op::Nin, OpV1::Nin),
    (Op::Contains, OpV1::Contains),
    (Op::Exists, OpV1::Exists),
];

fn op_v1(op: Op) -> OpV1 {
    OPS.iter().find(|(o, _)| *o == op).map_or(OpV1::Eq, |(_, v)| *v)
}

fn op_of(v: OpV1) -> Op {
    OPS.iter().find(|(_, w)| *w == v).map_or(Op::Eq, |(o, _)| *o)
}

impl From<&Subscription> for SubscriptionV1 {
    fn from(s: &Subscription) -> Self {
        SubscriptionV1 {
            id: s.id.clone(),
            target_id: s.target_id.clone(),
            event_types: s.event_types.clone(),
            kanban_ids: s.kanban_ids.clone(),
            field_names: s.field_names.clone(),
            filters: s
                .filters
                .iter()
                .map(|f| FilterV1 { path: f.path.clone(), op: op_v1(f.op), value_json: f.value_json.clone() })
                .collect(),
            version_major: s.version_major,
            created_at_ms: s.created_at_ms,
            from_seq: s.from_seq,
        }
    }
}

impl From<SubscriptionV1> for Subscription {
    fn from(s: SubscriptionV1) -> Self {
        Subscription {
            id: s.id,
            target_id: s.target_id,
            event_types: s.event_types,
            kanban_ids: s.kanban_ids,
            field_names: s.field_names,
            filters: s
                .filters
                .into_iter()
                .map(|f| Filter { path: f.path, op: op_of(f.op), value_json: f.value_json })
                .collect(),
            version_major: s.version_major,
            created_at_ms: s.created_at_ms,
            from_seq: s.from_seq,
        }
    }
}
