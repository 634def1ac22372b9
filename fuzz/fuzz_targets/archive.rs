//! The archive reader never panics on any bytes; every record it keeps lies inside the
//! object, in order, and re-encodes to exactly the bytes it was read from (a record has one
//! encoding); every problem names an offset inside the object.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sealroom_record::archive::read_segment;

fuzz_target!(|data: &[u8]| {
    let data = Bytes::copy_from_slice(data);
    let contents = read_segment("fuzz", data.clone());
    let mut last_end = 0usize;
    for (offset, record) in &contents.records {
        let offset = usize::try_from(*offset).expect("offset fits");
        assert!(offset >= last_end, "records are in order and do not overlap");
        let mut encoded = Vec::new();
        record.encode(&mut encoded).expect("a record read re-encodes");
        let end = offset + encoded.len();
        assert!(end <= data.len(), "a record lies inside the object");
        assert_eq!(&data[offset..end], &encoded[..], "one encoding per record");
        last_end = end;
    }
    for problem in &contents.problems {
        assert!(usize::try_from(problem.offset).expect("fits") <= data.len());
        assert_eq!(problem.object, "fuzz");
    }
});
