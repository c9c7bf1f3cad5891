//! Backups outlive the code that wrote them: every envelope format ever
//! written must still decode. Each format keeps a frozen sample here.

use jobvault_core::Envelope;
use jobvault_core::job_object::decode_job_object;

include!("frozen/job.rs");

const V1_ENVELOPE: &[u8] = include_bytes!("frozen/envelope-v1.bin");
const V1_JOB_OBJECT: &[u8] = include_bytes!("frozen/job-object-v1.job");

#[test]
fn format_1_still_decodes() {
    assert_eq!(Envelope::decode(V1_ENVELOPE).unwrap(), frozen_v1_envelope());
    assert_eq!(
        decode_job_object(V1_JOB_OBJECT).unwrap(),
        frozen_v1_envelope()
    );
}

#[test]
fn format_1_is_still_what_we_write() {
    // If this fails, the envelope format changed: add a new format version
    // (see the docs of jobvault_core::envelope) instead of editing format 1.
    assert_eq!(frozen_v1_envelope().encode(), V1_ENVELOPE);
}
