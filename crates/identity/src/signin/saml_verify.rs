//! Verifying one SAML 2.0 `<Response>` (HTTP-POST binding) for one organisation's sign-in.
//!
//! samael (with xmlsec) verifies every XML signature against the IdP metadata's signing
//! certificates and keeps only what a verified signature covers. Around it, rules of ours that
//! samael leaves open:
//! - the document: UTF-8, no DOCTYPE, comment, CDATA, processing instruction or entity reference
//!   (a comment splits a signed `NameID` without breaking its signature: refused outright);
//! - its shape: exactly one `<Assertion>` (never encrypted), every `ID` unique, every signature
//!   enveloped in the element it signs (Reference `#ID` of its parent), only the exclusive or
//!   inclusive c14n and enveloped-signature transforms — signature wrapping needs one of these;
//! - the assertion itself signed (a signed response around an unsigned assertion is refused), with
//!   RSA-SHA256 or stronger (RSA/ECDSA with SHA-256/384/512) and SHA-256+ digests: SHA-1 refused;
//! - `Conditions` with `NotOnOrAfter` and an `AudienceRestriction` naming this organisation's SP,
//!   a bearer `SubjectConfirmationData` whose `Recipient` is our ACS, whose `InResponseTo` is a
//!   request this browser started and whose `NotOnOrAfter` has not passed; the response's
//!   `Destination` our ACS. Times allow [`CLOCK_SKEW_SECS`] of skew.
//!
//! IdP-initiated responses (no `InResponseTo`) are refused.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use libxml::tree::{Node, NodeType};
use samael::metadata::EntityDescriptor;
use samael::service_provider::{Error as SpError, ServiceProvider};

use crate::IdentityError;

/// How far the IdP's clock may be from ours.
pub const CLOCK_SKEW_SECS: i64 = 120;
/// The largest response accepted (decoded).
pub const MAX_RESPONSE_BYTES: usize = 128 * 1024;
/// The most groups read from an assertion.
pub const MAX_GROUPS: usize = 200;
/// The most attributes and namespace declarations one element may carry.
const MAX_ATTRIBUTES: usize = 32;

const NS_ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
const NS_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";

/// Signature algorithms accepted: RSA or ECDSA with SHA-256 or stronger.
const SIGNATURE_ALGORITHMS: [&str; 6] = [
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
];
const DIGEST_ALGORITHMS: [&str; 3] = [
    "http://www.w3.org/2001/04/xmlenc#sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512",
];
const TRANSFORMS: [&str; 5] = [
    "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
    "http://www.w3.org/2001/10/xml-exc-c14n#",
    "http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments",
];

/// Attribute names that carry an email address when the `NameID` is not one.
const EMAIL_ATTRIBUTES: [&str; 4] = [
    "email",
    "mail",
    "urn:oid:0.9.2342.19200300.100.1.3",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
];
const NAME_ATTRIBUTES: [&str; 4] = [
    "displayName",
    "name",
    "urn:oid:2.16.840.1.113730.3.1.241",
    "http://schemas.microsoft.com/identity/claims/displayname",
];

/// What this response must match.
pub(crate) struct Expect<'a> {
    pub idp_entity_id: &'a str,
    pub sp_entity_id: &'a str,
    pub acs_url: &'a str,
    /// The requests this browser has started (newest first).
    pub request_ids: &'a [String],
    /// The attribute (`Name` or `FriendlyName`) whose values are the person's groups.
    pub groups_attribute: &'a str,
    pub now: DateTime<Utc>,
}

/// A verified assertion: what it says of the person, and what must be remembered of it.
#[derive(Debug)]
pub(crate) struct Verified {
    pub assertion_id: String,
    pub in_response_to: String,
    /// The address the IdP asserts (not yet checked against the organisation's domains).
    pub email: String,
    pub name: Option<String>,
    /// The values of the organisation's groups attribute (at most [`MAX_GROUPS`], each at most
    /// 200 characters; others are left out).
    pub groups: Vec<String>,
    /// Until when the assertion could be presented (kept that long in the replay cache).
    pub keep_until: DateTime<Utc>,
}

pub(crate) fn refused(code: &'static str, reason: impl Into<String>) -> IdentityError {
    IdentityError::Forbidden { code, reason: reason.into() }
}

fn is(node: &Node, ns: &str, name: &str) -> bool {
    node.get_name() == name && node.get_namespace().is_some_and(|n| n.get_href() == ns)
}

fn descendants(root: &Node) -> Vec<Node> {
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(n) = stack.pop() {
        stack.extend(n.get_child_nodes());
        out.push(n);
    }
    out
}

/// The document-level rules (see the module comment), on the parser xmlsec itself uses.
fn check_shape(xml: &str, acs_url: &str) -> Result<(), IdentityError> {
    let head = xml.trim_start();
    if let Some(decl) = head.strip_prefix("<?xml") {
        let decl = decl.split("?>").next().unwrap_or_default().to_ascii_lowercase();
        if decl.contains("encoding") && !(decl.contains("utf-8") || decl.contains("utf8")) {
            return Err(refused("saml_xml_refused", "the response must be UTF-8"));
        }
    }
    for banned in ["<!DOCTYPE", "<!ENTITY", "<!--", "<![CDATA["] {
        if xml.contains(banned) {
            return Err(refused(
                "saml_xml_refused",
                format!("the response contains {banned}: no DTD, comment or CDATA is accepted"),
            ));
        }
    }
    if head.strip_prefix("<?xml").map_or(head, |d| d.split_once("?>").map_or("", |(_, rest)| rest)).contains("<?") {
        return Err(refused("saml_xml_refused", "the response contains a processing instruction"));
    }
    let doc = libxml::parser::Parser::default()
        .parse_string(xml)
        .map_err(|_| refused("saml_response_malformed", "the response is not well-formed XML"))?;
    let root = doc.get_root_element().ok_or_else(|| refused("saml_response_malformed", "the response is empty"))?;
    if !is(&root, NS_PROTOCOL, "Response") {
        return Err(refused("saml_response_malformed", "the document is not a SAML Response"));
    }
    if root.get_attribute("Destination").as_deref() != Some(acs_url) {
        return Err(refused("saml_recipient_mismatch", "the response's Destination is not this organisation's ACS"));
    }
    let mut ids = HashSet::new();
    let mut assertions = Vec::new();
    for n in descendants(&root) {
        match n.get_type() {
            Some(NodeType::ElementNode | NodeType::TextNode) => {}
            _ => return Err(refused("saml_xml_refused", "the response contains a comment, CDATA or entity")),
        }
        if !n.is_element_node() {
            continue;
        }
        // No SAML element needs more; it also bounds quick-xml's per-tag work inside samael
        // (RUSTSEC-2026-0194/0195, .cargo/audit.toml).
        if n.get_properties().len() + n.get_namespace_declarations().len() > MAX_ATTRIBUTES {
            return Err(refused("saml_response_malformed", "an element carries too many attributes"));
        }
        if let Some(id) = n.get_attribute("ID")
            && !ids.insert(id)
        {
            return Err(refused("saml_wrapping_refused", "two elements carry the same ID"));
        }
        if is(&n, NS_ASSERTION, "Assertion") {
            assertions.push(n.clone());
        }
        if is(&n, NS_ASSERTION, "EncryptedAssertion") {
            return Err(refused("saml_response_malformed", "encrypted assertions are not accepted"));
        }
        if is(&n, NS_DSIG, "Signature") {
            check_signature(&n)?;
        }
    }
    let [assertion] = assertions.as_slice() else {
        return Err(refused("saml_wrapping_refused", format!("{} assertions in one response", assertions.len())));
    };
    let own = assertion.get_child_elements().into_iter().any(|c| is(&c, NS_DSIG, "Signature"));
    if !own || assertion.get_parent().is_none_or(|p| !is(&p, NS_PROTOCOL, "Response")) {
        return Err(refused("saml_signature_missing", "the assertion itself is not signed"));
    }
    Ok(())
}

/// One `<ds:Signature>`: enveloped in the element it signs, one reference, strong algorithms.
fn check_signature(sig: &Node) -> Result<(), IdentityError> {
    let wrapping = |why: &str| refused("saml_wrapping_refused", format!("a signature {why}"));
    let parent = sig.get_parent().ok_or_else(|| wrapping("has no parent"))?;
    let parent_id = parent.get_attribute("ID").ok_or_else(|| wrapping("is inside an element without an ID"))?;
    let info = sig
        .get_child_elements()
        .into_iter()
        .find(|c| is(c, NS_DSIG, "SignedInfo"))
        .ok_or_else(|| wrapping("has no SignedInfo"))?;
    if sig.get_child_elements().iter().any(|c| is(c, NS_DSIG, "Object")) {
        return Err(wrapping("carries an Object"));
    }
    let mut references = 0;
    for c in info.get_child_elements() {
        if is(&c, NS_DSIG, "SignatureMethod") {
            let alg = c.get_attribute("Algorithm").unwrap_or_default();
            if !SIGNATURE_ALGORITHMS.contains(&alg.as_str()) {
                return Err(refused(
                    "saml_algorithm_refused",
                    format!("signature algorithm {alg} is refused: RSA-SHA256 or stronger only"),
                ));
            }
        }
        if is(&c, NS_DSIG, "Reference") {
            references += 1;
            if c.get_attribute("URI").as_deref() != Some(format!("#{parent_id}").as_str()) {
                return Err(wrapping("references something other than the element it is in"));
            }
            for r in c.get_child_elements() {
                if is(&r, NS_DSIG, "DigestMethod") {
                    let alg = r.get_attribute("Algorithm").unwrap_or_default();
                    if !DIGEST_ALGORITHMS.contains(&alg.as_str()) {
                        return Err(refused(
                            "saml_algorithm_refused",
                            format!("digest algorithm {alg} is refused: SHA-256 or stronger only"),
                        ));
                    }
                }
                if is(&r, NS_DSIG, "Transforms") {
                    for t in r.get_child_elements() {
                        let alg = t.get_attribute("Algorithm").unwrap_or_default();
                        if !TRANSFORMS.contains(&alg.as_str()) {
                            return Err(wrapping("uses a transform that is not accepted"));
                        }
                    }
                }
            }
        }
    }
    if references != 1 {
        return Err(wrapping("must have exactly one reference"));
    }
    Ok(())
}

fn sp_error(e: &SpError) -> IdentityError {
    let code = match e {
        SpError::FailedToValidateSignature => "saml_signature_invalid",
        SpError::DestinationValidationError { .. } => "saml_recipient_mismatch",
        SpError::ResponseInResponseToInvalid { .. } => "saml_in_response_to_mismatch",
        SpError::AssertionExpired { .. }
        | SpError::ResponseExpired { .. }
        | SpError::AssertionConditionExpired { .. }
        | SpError::AssertionConditionExpiredBefore { .. } => "saml_expired",
        SpError::AssertionConditionAudienceRestrictionFailed { .. } => "saml_audience_mismatch",
        SpError::AssertionIssuerMismatch { .. } | SpError::ResponseIssuerMismatch { .. } => "saml_issuer_mismatch",
        SpError::ResponseBadStatusCode { .. } => "saml_idp_refused",
        _ => "saml_response_malformed",
    };
    refused(code, e.to_string())
}

/// Verifies a decoded response against the IdP's metadata and what this sign-in expects.
///
/// # Errors
/// `Forbidden` with a stable `saml_*` code naming the first rule broken.
pub(crate) fn verify(metadata: &EntityDescriptor, xml: &str, e: &Expect<'_>) -> Result<Verified, IdentityError> {
    if xml.len() > MAX_RESPONSE_BYTES {
        return Err(refused("saml_response_malformed", "the response is too large"));
    }
    check_shape(xml, e.acs_url)?;
    let skew = Duration::seconds(CLOCK_SKEW_SECS);
    let sp = ServiceProvider {
        entity_id: Some(e.sp_entity_id.to_owned()),
        acs_url: Some(e.acs_url.to_owned()),
        idp_metadata: metadata.clone(),
        allow_idp_initiated: false,
        max_clock_skew: skew,
        max_issue_delay: Duration::seconds(300),
        ..ServiceProvider::default()
    };
    // Without signing certificates samael would verify nothing: never reached (the metadata is
    // refused on upload), and refused here again.
    if !matches!(sp.idp_signing_certs(), Ok(Some(c)) if !c.is_empty()) {
        return Err(refused("saml_signature_invalid", "the identity provider's metadata has no signing certificate"));
    }
    let ids: Vec<&str> = e.request_ids.iter().map(String::as_str).collect();
    let assertion = sp.parse_xml_response(xml, Some(&ids)).map_err(|err| sp_error(&err))?;
    // What survived samael's reduction is signed; the assertion's own signature is required.
    if assertion.signature.is_none() {
        return Err(refused("saml_signature_missing", "the assertion itself is not signed"));
    }
    if assertion.issuer.value.as_deref() != Some(e.idp_entity_id) {
        return Err(refused("saml_issuer_mismatch", "the assertion is not from this organisation's identity provider"));
    }
    let conditions = assertion
        .conditions
        .as_ref()
        .ok_or_else(|| refused("saml_audience_mismatch", "the assertion has no conditions"))?;
    let audience_ok = conditions
        .audience_restrictions
        .as_ref()
        .is_some_and(|rs| !rs.is_empty() && rs.iter().all(|r| r.audience.iter().any(|a| a == e.sp_entity_id)));
    if !audience_ok {
        return Err(refused("saml_audience_mismatch", "the assertion is not for this organisation's service provider"));
    }
    let not_after =
        conditions.not_on_or_after.ok_or_else(|| refused("saml_expired", "the assertion has no NotOnOrAfter"))?;
    if not_after + skew <= e.now {
        return Err(refused("saml_expired", "the assertion has expired"));
    }
    if conditions.not_before.is_some_and(|nb| e.now < nb - skew) {
        return Err(refused("saml_expired", "the assertion is not valid yet"));
    }
    let subject = assertion.subject.as_ref().ok_or_else(|| refused("saml_response_malformed", "no subject"))?;
    let confirmation = subject
        .subject_confirmations
        .iter()
        .flatten()
        .filter(|c| c.method.as_deref() == Some(BEARER))
        .find_map(|c| c.subject_confirmation_data.as_ref())
        .ok_or_else(|| refused("saml_recipient_mismatch", "no bearer subject confirmation"))?;
    if confirmation.recipient.as_deref() != Some(e.acs_url) {
        return Err(refused("saml_recipient_mismatch", "the assertion's recipient is not this organisation's ACS"));
    }
    let in_response_to = confirmation.in_response_to.clone().unwrap_or_default();
    if !e.request_ids.contains(&in_response_to) {
        return Err(refused("saml_in_response_to_mismatch", "the assertion answers no request this browser made"));
    }
    let confirm_until = confirmation
        .not_on_or_after
        .ok_or_else(|| refused("saml_expired", "the subject confirmation has no NotOnOrAfter"))?;
    if confirm_until + skew <= e.now {
        return Err(refused("saml_expired", "the subject confirmation has expired"));
    }
    let attribute = |names: &[&str]| {
        assertion
            .attribute_statements
            .iter()
            .flatten()
            .flat_map(|s| s.attributes.iter())
            .filter(|a| names.iter().any(|n| a.name.as_deref() == Some(*n) || a.friendly_name.as_deref() == Some(*n)))
            .flat_map(|a| a.values.iter())
            .find_map(|v| v.value.as_ref().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()))
    };
    let name_id = subject.name_id.as_ref().map(|n| n.value.trim().to_owned()).unwrap_or_default();
    let email = if name_id.contains('@') { Some(name_id) } else { attribute(&EMAIL_ATTRIBUTES) }
        .ok_or_else(|| refused("saml_email_missing", "the assertion names no email address"))?;
    let groups = assertion
        .attribute_statements
        .iter()
        .flatten()
        .flat_map(|s| s.attributes.iter())
        .filter(|a| {
            a.name.as_deref() == Some(e.groups_attribute) || a.friendly_name.as_deref() == Some(e.groups_attribute)
        })
        .flat_map(|a| a.values.iter())
        .filter_map(|v| v.value.as_deref().map(str::trim))
        .filter(|g| !g.is_empty() && g.len() <= 200)
        .map(str::to_owned)
        .take(MAX_GROUPS)
        .collect();
    Ok(Verified {
        assertion_id: assertion.id.clone(),
        in_response_to,
        email,
        name: attribute(&NAME_ATTRIBUTES),
        groups,
        keep_until: not_after.max(confirm_until) + skew,
    })
}
