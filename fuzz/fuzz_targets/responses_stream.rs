//! A Responses API SSE body, split into reads at the positions the input's first byte
//! gives: a reply or a failure, and the same one however the bytes are split.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&cuts, body)) = data.split_first() else { return };
    let whole = orchestrator::fuzzing::responses_sse(vec![body.to_vec()]);
    let step = usize::from(cuts % 7) + 1;
    let reads: Vec<Vec<u8>> = body.chunks(step).map(<[u8]>::to_vec).collect();
    let split = orchestrator::fuzzing::responses_sse(reads);
    assert_eq!(whole.is_ok(), split.is_ok());
    if let (Ok(a), Ok(b)) = (whole, split) {
        assert_eq!(a, b);
    }
});
