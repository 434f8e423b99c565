//! The safetensors reader on arbitrary bytes: it must never panic, and every tensor it hands out
//! must hold exactly the bytes its dtype and shape need.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = kiln::convert::Safetensors::parse(data) {
        for t in &file.tensors {
            let elements: u64 = t.shape.iter().product();
            assert_eq!(t.data.len() as u64, elements * t.dtype.size());
        }
    }
});
