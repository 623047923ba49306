//! The agent's own rule ids, in one table. Policies cannot use the `baomi.` prefix
//! (`policy::validate::RESERVED_RULE_PREFIX`), so these never collide with the office's rules.

/// Holds the fail-closed posture (expired policy, sync overdue, store full, unassigned device,
/// untrusted policy).
pub const FAIL_CLOSED: &str = "baomi.fail_closed";
/// A tamper event reported by the platform (enforcement failed, device-owner role lost, ...).
pub const TAMPER: &str = "baomi.tamper";
/// No successful sync for longer than the policy allows.
pub const SYNC_OVERDUE: &str = "baomi.sync_overdue";
/// The violation store passed its size cap.
pub const STORE_FULL: &str = "baomi.store_full";
/// The device clock is far from the server's, or reads earlier than a time already seen.
pub const CLOCK: &str = "baomi.clock";
/// The server (or a relay) delivered something that did not verify.
pub const REJECTED_DELIVERY: &str = "baomi.rejected_delivery";

/// The violation store was damaged (records deleted, edited, inserted, cut off) or restored
/// from an older copy: what could be read is kept, the rest is named.
pub const STORE_DAMAGED: &str = "baomi.store_damaged";
/// The office announced something (a custody record, a bundle, a trust root) that did not
/// arrive: a relay withheld it.
pub const WITHHELD: &str = "baomi.withheld_delivery";
/// A trust root the device had installed was replaced out of band (managed configuration):
/// its chain had forked from the office's.
pub const TRUST_ROOT_REPLACED: &str = "baomi.trust_root_replaced";

/// Every agent rule id with what it means (for documentation and the officer's console).
pub const ALL: &[(&str, &str)] = &[
    (FAIL_CLOSED, "the fail-closed posture is in force"),
    (
        TAMPER,
        "the platform reported tampering or an enforcement failure",
    ),
    (
        SYNC_OVERDUE,
        "no successful sync for longer than the policy allows",
    ),
    (STORE_FULL, "the violation store passed its size cap"),
    (CLOCK, "the device clock is off or was set back"),
    (
        REJECTED_DELIVERY,
        "signed material from the network did not verify",
    ),
    (
        STORE_DAMAGED,
        "the violation store was damaged or restored from an older copy",
    ),
    (
        WITHHELD,
        "something the office sent did not arrive (withheld in transit)",
    ),
    (
        TRUST_ROOT_REPLACED,
        "the trust root was replaced out of band after its chain forked",
    ),
];
