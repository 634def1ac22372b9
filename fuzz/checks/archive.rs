//! The archive reader never panics on any bytes (a segment object from the customer's
//! storage); every record it keeps lies inside the object, in order, and re-encodes to
//! exactly the bytes it was read from (a record has one encoding); every problem names an
//! offset inside the object.
//!
//! Shared by the fuzz target of the same name and by the corpus replay test
//! (`tests/fuzz_corpus.rs` in the root workspace), so both check exactly the same.

use bytes::Bytes;
use sealroom_record::archive::read_segment;

/// The check the fuzz target runs on every input.
pub fn run(data: &[u8]) {
    let data = Bytes::copy_from_slice(data);
    let contents = read_segment("fuzz", data.clone());
    let mut last_end = 0usize;
    for (offset, record) in &contents.records {
        let offset = usize::try_from(*offset).expect("offset fits");
        assert!(
            offset >= last_end,
            "records are in order and do not overlap"
        );
        let mut encoded = Vec::new();
        record
            .encode(&mut encoded)
            .expect("a record read re-encodes");
        let end = offset + encoded.len();
        assert!(end <= data.len(), "a record lies inside the object");
        assert_eq!(&data[offset..end], &encoded[..], "one encoding per record");
        last_end = end;
    }
    for problem in &contents.problems {
        assert!(usize::try_from(problem.offset).expect("fits") <= data.len());
        assert_eq!(problem.object, "fuzz");
    }
}
