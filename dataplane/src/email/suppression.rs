//! Suppression: addresses no email goes to. A permanent SMTP answer about a
//! recipient's mailbox (a hard bounce) adds the address; the API adds
//! complaints, unsubscribes and manual entries. The send route refuses an
//! email with a suppressed recipient before anything is queued, and the
//! worker does not send one queued before its recipient was suppressed.
//!
//! Which answers are bounces: an SMTP client learns which command a reply
//! answers, but lettre reports only the reply, so the reply itself must
//! say it is about a mailbox. With an enhanced status code (RFC 3463, what
//! Postfix, Exim, Gmail and Exchange send) that is class 5 with subject 1
//! (addressing: `5.1.1` no such user, `5.1.10` null MX…; but not `5.1.7`
//! and `5.1.8`, the sender's address) or `5.2.1`
//! (mailbox disabled); a full mailbox (`5.2.2`) or a policy refusal
//! (`5.7.x`, spam) is not the address's fault. Without one, a 550, 551 or
//! 553 counts only when its text speaks of a recipient, a mailbox or a user
//! and not of the sender: a relay refusing our own sender must not
//! suppress every recipient it was given.

use std::time::SystemTime;

use crate::store::{Recipients, Store, StoreError, Suppression, unix_millis};

/// Why an address is suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A permanent SMTP failure about the mailbox.
    Bounce,
    /// The recipient reported the mail as spam.
    Complaint,
    /// The recipient asked to receive no more.
    Unsubscribe,
    /// Added by hand.
    Manual,
}

impl Reason {
    /// Its name in the store, the API and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Bounce => "bounce",
            Reason::Complaint => "complaint",
            Reason::Unsubscribe => "unsubscribe",
            Reason::Manual => "manual",
        }
    }

    /// The reasons a caller may give (bounces are found, not declared).
    pub fn from_caller(name: &str) -> Option<Reason> {
        match name {
            "complaint" => Some(Reason::Complaint),
            "unsubscribe" => Some(Reason::Unsubscribe),
            "manual" => Some(Reason::Manual),
            _ => None,
        }
    }
}

/// Every address of `r`: to, cc and bcc.
pub fn all_recipients(r: &Recipients) -> Vec<&str> {
    r.to.iter()
        .chain(&r.cc)
        .chain(&r.bcc)
        .map(|a| bare_address(a))
        .collect()
}

/// `bob@example.com` from `Bob <bob@example.com>` (or the address itself).
pub fn bare_address(mailbox: &str) -> &str {
    match (mailbox.rfind('<'), mailbox.rfind('>')) {
        (Some(open), Some(close)) if open < close => mailbox[open + 1..close].trim(),
        _ => mailbox.trim(),
    }
}

/// The first suppressed recipient of `r`, with its entry.
pub async fn first_suppressed(
    store: &Store,
    r: &Recipients,
) -> Result<Option<(usize, Suppression)>, StoreError> {
    let addresses = all_recipients(r);
    let found = store.suppressed(&addresses).await?;
    Ok(addresses.iter().enumerate().find_map(|(i, a)| {
        found
            .iter()
            .find(|s| s.address.eq_ignore_ascii_case(a))
            .map(|s| (i, s.clone()))
    }))
}

/// The request field of the `index`th address of [`all_recipients`].
pub fn field_of(r: &Recipients, index: usize) -> String {
    let (to, cc) = (r.to.len(), r.cc.len());
    if index < to {
        format!("to[{index}]")
    } else if index < to + cc {
        format!("cc[{}]", index - to)
    } else {
        format!("bcc[{}]", index - to - cc)
    }
}

/// Whether an SMTP answer (`"550 5.1.1 <bob@…>: user unknown"`, as
/// `SendError` words it: `SMTP 550 …`, or the bare reply) says the mailbox
/// is gone for good.
pub fn is_hard_bounce(answer: &str) -> bool {
    // Numbers and dotted codes, whatever separates them (`550-5.1.1`,
    // `(550):`).
    let tokens: Vec<&str> = answer
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter(|t| !t.is_empty())
        .collect();
    let Some(code) = tokens
        .iter()
        .copied()
        .find(|t| t.len() == 3 && t.bytes().all(|b| b.is_ascii_digit()))
    else {
        return false;
    };
    if !code.starts_with('5') {
        return false;
    }
    let enhanced = tokens.iter().find(|t| {
        let parts: Vec<&str> = t.split('.').collect();
        parts.len() == 3 && parts[0] == "5" && parts[1..].iter().all(|p| !p.is_empty())
    });
    if let Some(enhanced) = enhanced {
        let mut parts = enhanced.split('.').skip(1);
        return match (parts.next(), parts.next()) {
            // 5.1.7 and 5.1.8 are about the sender's address.
            (Some("1"), Some(detail)) => !matches!(detail, "7" | "8"),
            (Some("2"), Some("1")) => true,
            _ => false,
        };
    }
    let text = answer.to_lowercase();
    matches!(code, "550" | "551" | "553")
        && !text.contains("sender")
        && ["recipient", "mailbox", "user", "no such", "does not exist"]
            .iter()
            .any(|w| text.contains(w))
}

/// The recipients of `r` a hard bounce is about: those its answer names,
/// else the only one; none when it names none of several (which one the
/// server refused cannot be told).
pub fn bounced<'a>(r: &'a Recipients, answer: &str) -> Vec<&'a str> {
    let all = all_recipients(r);
    let text = answer.to_lowercase();
    let named: Vec<&str> = all
        .iter()
        .copied()
        .filter(|a| text.contains(&a.to_lowercase()))
        .collect();
    match (named.is_empty(), all.len()) {
        (false, _) => named,
        (true, 1) => all,
        (true, _) => Vec::new(),
    }
}

/// A bounce's entry for `address`, by the system.
pub fn bounce_entry(address: &str, email_id: &str, answer: &str, now: SystemTime) -> Suppression {
    Suppression {
        address: address.to_lowercase(),
        reason: Reason::Bounce.as_str().to_owned(),
        detail: Some(answer.chars().take(500).collect()),
        email_id: Some(email_id.to_owned()),
        created_at: unix_millis(now),
        created_by: "system".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_answers_about_the_mailbox_are_hard_bounces() {
        for bounce in [
            "SMTP 550: permanent error (550): 5.1.1 <bob@example.com>: Recipient address rejected: User unknown",
            "550 5.1.1 The email account that you tried to reach does not exist.",
            "550-5.1.1 The email account",
            "550 5.2.1 The email account that you tried to reach is disabled.",
            "556 5.1.10 Recipient address has null MX",
            "550 Chaos recipient error",
            "553 sorry, no mailbox here by that name",
            "551 User not local",
        ] {
            assert!(is_hard_bounce(bounce), "{bounce}");
        }
        for not in [
            "550 Chaos sender error",
            "550 5.7.1 Message rejected as spam",
            "552 5.2.2 Mailbox full",
            "554 5.7.1 Relay access denied",
            "553 5.1.7 The sender address is malformed",
            "550 5.1.8 Bad sender's system address",
            "451 4.1.1 try later",
            "421 service not available",
            "SMTP timeout after 30s",
            "550 Sender address rejected: not owned by user",
        ] {
            assert!(!is_hard_bounce(not), "{not}");
        }
    }

    #[test]
    fn a_bounce_is_pinned_on_the_addresses_it_names_or_the_only_one() {
        let one = Recipients {
            to: vec!["Bob <Bob@Example.com>".into()],
            cc: vec![],
            bcc: vec![],
        };
        assert_eq!(bounced(&one, "550 5.1.1 user unknown"), ["Bob@Example.com"]);
        let several = Recipients {
            to: vec!["ada@example.com".into()],
            cc: vec!["bob@example.com".into()],
            bcc: vec!["carol@example.com".into()],
        };
        assert!(bounced(&several, "550 5.1.1 user unknown").is_empty());
        assert_eq!(
            bounced(
                &several,
                "550 5.1.1 <BOB@example.com>: Recipient address rejected"
            ),
            ["bob@example.com"]
        );
        assert_eq!(field_of(&several, 0), "to[0]");
        assert_eq!(field_of(&several, 1), "cc[0]");
        assert_eq!(field_of(&several, 2), "bcc[0]");
    }
}
