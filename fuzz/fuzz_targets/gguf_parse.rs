//! Parses arbitrary bytes as GGUF; on success walks every value and tensor and writes the file back.
#![no_main]

use kiln_gguf::{Gguf, Layout, Limits, TensorSpec, Writer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default().max_alloc(64 << 20);
    let Ok(gguf) = Gguf::parse(data, &limits) else { return };
    for (_, value) in gguf.metadata().iter() {
        if let Some(array) = value.as_array() {
            for item in array.iter() {
                std::hint::black_box(item);
            }
        }
    }
    let specs: Vec<TensorSpec<'_>> = gguf
        .tensors()
        .iter()
        .filter(|t| t.n_bytes().is_some())
        .map(|t| TensorSpec::new(t.name(), t.ggml_type(), t.dims().to_vec()))
        .collect();
    let metadata = gguf.metadata().to_vec();
    let Ok(layout) = Layout::compute(&metadata, &specs) else { return };
    // A legal but huge alignment makes a huge (zero-padded) file: stream it to a sink.
    if layout.file_len > 16 << 20 {
        let mut writer = Writer::new(std::io::sink(), &metadata, &specs).expect("layout computed");
        for t in gguf.tensors().iter().filter(|t| t.n_bytes().is_some()) {
            writer.write_tensor_data(t.data()).expect("sizes come from the parsed file");
        }
        writer.finish().expect("all tensors written");
        return;
    }
    let mut writer = Writer::new(Vec::new(), &metadata, &specs).expect("layout computed");
    for t in gguf.tensors().iter().filter(|t| t.n_bytes().is_some()) {
        writer.write_tensor_data(t.data()).expect("sizes come from the parsed file");
    }
    let bytes = writer.finish().expect("all tensors written");
    assert_eq!(bytes.len() as u64, layout.file_len);
    let again = Gguf::parse(&bytes, &Limits::default()).expect("kiln's own output parses");
    assert_eq!(again.tensors().len(), specs.len());
});
