// The properties the fuzz targets check. Included by the targets and by the
// core's corpus test, so that CI checks every corpus entry without nightly.

/// Parsing a trigger's content never panics, and a count it accepts is
/// written back the same. Returns the parsed count.
pub fn check_trigger_content(data: &[u8]) -> Option<u32> {
    use jobvault_core::trigger::{
        TriggerFile, TriggerName, format_attempts, parse_attempts, sort_triggers,
    };
    let parsed = parse_attempts(data).ok();
    if let Some(n) = parsed {
        assert_eq!(parse_attempts(format_attempts(n).as_bytes()), Ok(n));
    }
    // The same bytes as a file name: sorting never loses a file.
    let name = String::from_utf8_lossy(data).into_owned();
    let files = [TriggerFile {
        name: TriggerName::found(name.clone()),
        name_is_text: std::str::from_utf8(data).is_ok(),
        modified: jobvault_core::Timestamp::UNIX_EPOCH,
        content: Ok(data.to_vec()),
    }];
    let sorted = sort_triggers(&files);
    let hidden = name.starts_with('.');
    assert_eq!(sorted.valid.len() + sorted.malformed.len(), usize::from(!hidden));
    parsed
}

/// Decoding a job object never panics, and what decodes re-encodes to the
/// same envelope. Returns the decoded envelope.
pub fn check_job_object(data: &[u8]) -> Option<jobvault_core::Envelope> {
    use jobvault_core::Envelope;
    use jobvault_core::job_object::decode_job_object;
    let envelope = decode_job_object(data).ok()?;
    assert_eq!(Envelope::decode(&envelope.encode()).as_ref(), Ok(&envelope));
    Some(envelope)
}
