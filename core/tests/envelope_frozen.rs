//! Backups outlive the code that wrote them: every envelope format ever
//! written must still decode. Each format keeps frozen samples here.

use jobvault_core::job_object::decode_job_object;
use jobvault_core::{Envelope, JobId, Timestamp};

const V1_ENVELOPE: &[u8] = include_bytes!("frozen/envelope-v1.bin");
const V1_JOB_OBJECT: &[u8] = include_bytes!("frozen/job-object-v1.job");
/// The body the first release stored for the job in the format 1 samples.
const V1_BODY: &str = include_str!("frozen/envelope-v1.body.json");

const V2_WRITTEN: &[u8] = include_bytes!("frozen/envelope-v2-written.bin");
const V2_DELETED: &[u8] = include_bytes!("frozen/envelope-v2-deleted.bin");
const V2_JOB_OBJECT: &[u8] = include_bytes!("frozen/job-object-v2.job");
/// A body as an outside writer might store it: fields jobvault does not know,
/// spacing and a line break of its own, a number written its own way.
const V2_BODY: &str = include_str!("frozen/envelope-v2.body.json");

fn id() -> JobId {
    JobId::new("20161116T220425.634818978Z_0000000000001e88").unwrap()
}

fn at(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).unwrap()
}

fn v1() -> Envelope {
    Envelope::written(
        id(),
        7_822,
        at("2016-11-16T22:10:01.5Z"),
        V1_BODY.trim_end(),
    )
}

fn v2_written() -> Envelope {
    Envelope::written(id(), 7_823, at("2016-11-16T22:11:00.25Z"), V2_BODY)
}

fn v2_deleted() -> Envelope {
    Envelope::deleted(id(), 7_824, at("2016-11-16T22:12:00Z"))
}

#[test]
fn format_1_still_decodes_to_the_body_the_first_release_stored() {
    assert_eq!(Envelope::decode(V1_ENVELOPE).unwrap(), v1());
    assert_eq!(decode_job_object(V1_JOB_OBJECT).unwrap(), v1());
}

#[test]
fn format_2_still_decodes() {
    assert_eq!(Envelope::decode(V2_WRITTEN).unwrap(), v2_written());
    assert_eq!(Envelope::decode(V2_DELETED).unwrap(), v2_deleted());
    assert_eq!(decode_job_object(V2_JOB_OBJECT).unwrap(), v2_written());
}

#[test]
fn format_2_is_still_what_we_write() {
    // If this fails, the envelope format changed: add a new format version
    // (see the docs of jobvault_core::envelope) instead of editing format 2.
    assert_eq!(v2_written().encode(), V2_WRITTEN);
    assert_eq!(v2_deleted().encode(), V2_DELETED);
}
