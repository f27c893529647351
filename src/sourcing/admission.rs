//! Admission: what an order must be under the rules in force before any stock is read, checked
//! in one step, once per quote or reserve. An [`Admitted`] order names a segment that exists
//! and, for a pickup, a node of the network that serves pickups and that the segment may use;
//! building its [`Problem`](super::Problem) cannot then fail on what the order says, and only
//! the stock can refuse it. The order's shape (ids, quantities, coordinates) is checked before
//! this, where the wire is converted (`api::convert::order`), as it needs no rules.

use std::borrow::Cow;

use crate::domain::{DeliveryMode, Network, Node, Order, Refusal, Rules, SegmentRules};
use crate::error::Error;

/// An order its rules admit, with the segment rules it is planned under and its pickup store.
/// Only admission makes one. It borrows from the order and the rules it was admitted under;
/// [`Admitted::into_owned`] makes one that can be sent to a solver thread.
#[derive(Debug, Clone)]
pub struct Admitted<'a> {
    order: Cow<'a, Order>,
    segment: Cow<'a, SegmentRules>,
    pickup: Option<Cow<'a, Node>>,
}

impl<'a> Admitted<'a> {
    /// Admits `order` under `rules`: its segment must be one of theirs, and its pickup store
    /// (if any) as [`Admitted::under`] says. Errors name the field of the order at fault, as
    /// the API spells it.
    pub fn admit(order: &'a Order, rules: &'a Rules) -> Result<Self, Error> {
        let segment = rules.segments.get(&order.segment).ok_or_else(|| {
            Error::invalid(
                "order.segment",
                format!(
                    "unknown segment {:?} (known: {})",
                    order.segment,
                    rules.segments.names().join(", ")
                ),
            )
        })?;
        Self::under(order, segment, &rules.network)
    }

    /// Admits `order` under the rules of `segment`, chosen by the caller, on `network`: a
    /// pickup store must be a node of the network (else INVALID_ARGUMENT) that serves pickups
    /// (likewise) and that the segment may use (else the order is refused).
    pub fn under(
        order: &'a Order,
        segment: &'a SegmentRules,
        network: &'a Network,
    ) -> Result<Self, Error> {
        let pickup = match &order.delivery {
            DeliveryMode::Ship => None,
            DeliveryMode::Pickup { node_id } => {
                let node = network.get(node_id).ok_or_else(|| {
                    Error::invalid(
                        "order.pickup_node_id",
                        format!("no node {node_id:?} in the network"),
                    )
                })?;
                if !node.can_pickup {
                    return Err(Error::invalid(
                        "order.pickup_node_id",
                        format!("node {node_id:?} does not serve pickups"),
                    ));
                }
                if let Some(why) = segment.exclusion(node) {
                    return Err(Refusal::pickup_store(order, segment, node, why).into());
                }
                Some(Cow::Borrowed(node))
            }
        };
        Ok(Self {
            order: Cow::Borrowed(order),
            segment: Cow::Borrowed(segment),
            pickup,
        })
    }

    pub fn order(&self) -> &Order {
        &self.order
    }

    /// The rules of the order's segment.
    pub fn segment(&self) -> &SegmentRules {
        &self.segment
    }

    /// The node the customer collects at, for a pickup order.
    pub fn pickup(&self) -> Option<&Node> {
        self.pickup.as_deref()
    }

    /// The same admission, owning copies of what it borrowed.
    pub fn into_owned(self) -> Admitted<'static> {
        Admitted {
            order: Cow::Owned(self.order.into_owned()),
            segment: Cow::Owned(self.segment.into_owned()),
            pickup: self.pickup.map(|p| Cow::Owned(p.into_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{NodeKind, RefusalKind, Segments, UnfilledPolicy};
    use crate::sourcing::tests::{network, order, rules};

    fn rules_in_force(segment: SegmentRules) -> Rules {
        Rules {
            network: network(),
            segments: Segments::new([segment]),
            alerts: Default::default(),
            lookahead: Default::default(),
            version: "test".into(),
        }
    }

    fn pickup_at(node_id: &str) -> Order {
        let mut o = order(&[("1", "A", 1, None)]);
        o.delivery = DeliveryMode::Pickup {
            node_id: node_id.into(),
        };
        o
    }

    #[test]
    fn an_order_is_admitted_with_its_segment_and_pickup_store() {
        let all = rules_in_force(rules(3, UnfilledPolicy::Reject));
        let o = pickup_at("shop");
        let a = Admitted::admit(&o, &all).unwrap();
        assert_eq!(a.order(), &o);
        assert_eq!(a.segment().name, "test");
        assert_eq!(a.pickup().map(|n| n.id.as_str()), Some("shop"));
        let owned = a.into_owned();
        assert_eq!(owned.pickup().map(|n| n.id.as_str()), Some("shop"));
        let shipped = order(&[("1", "A", 1, None)]);
        assert!(Admitted::admit(&shipped, &all).unwrap().pickup().is_none());
    }

    #[test]
    fn what_the_rules_refuse_is_named_by_the_field_of_the_order() {
        let all = rules_in_force(rules(3, UnfilledPolicy::Reject));
        let field_and_problem = |o: &Order| match Admitted::admit(o, &all) {
            Err(Error::InvalidArgument { field, problem }) => (field, problem),
            other => panic!("{other:?}"),
        };
        let mut gold = order(&[("1", "A", 1, None)]);
        gold.segment = "gold".into();
        assert_eq!(
            field_and_problem(&gold),
            (
                "order.segment".to_owned(),
                "unknown segment \"gold\" (known: test)".to_owned()
            )
        );
        assert_eq!(
            field_and_problem(&pickup_at("atlantis")),
            (
                "order.pickup_node_id".to_owned(),
                "no node \"atlantis\" in the network".to_owned()
            )
        );
        assert_eq!(
            field_and_problem(&pickup_at("near")),
            (
                "order.pickup_node_id".to_owned(),
                "node \"near\" does not serve pickups".to_owned()
            )
        );
    }

    #[test]
    fn a_pickup_store_the_segment_may_not_use_refuses_the_order() {
        let mut no_stores = rules(3, UnfilledPolicy::Backorder);
        no_stores.node_kinds.remove(&NodeKind::Store);
        let all = rules_in_force(no_stores);
        let Err(Error::Refused(r)) = Admitted::admit(&pickup_at("shop"), &all) else {
            panic!("the pickup store is allowed")
        };
        assert_eq!(r.kind, RefusalKind::PickupStoreNotAllowed);
        assert!(r.shortages.is_empty());
        assert_eq!(
            r.to_string(),
            "segment test may not use pickup store shop: kind store not allowed for segment test"
        );
        let mut listed = rules(3, UnfilledPolicy::Backorder);
        listed.excluded_nodes.insert("shop".into());
        let all = rules_in_force(listed);
        let Err(Error::Refused(r)) = Admitted::admit(&pickup_at("shop"), &all) else {
            panic!("the pickup store is allowed")
        };
        assert_eq!(
            (r.kind, r.pickup_store.unwrap().rule.as_str()),
            (
                RefusalKind::PickupStoreNotAllowed,
                "excluded by segment test"
            )
        );
    }
}
