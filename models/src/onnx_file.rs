//! Reads the little Demix needs from an ONNX file without ONNX Runtime: whether it is an ONNX
//! model at all, its `metadata_props` (where the manifest lives) and its parameter count. A
//! minimal protobuf walker over `ModelProto`; set-up only, never on the audio thread.

/// What [`inspect`] learnt about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxFileInfo {
    /// `ModelProto.ir_version`.
    pub ir_version: u64,
    /// `ModelProto.metadata_props`, in file order.
    pub metadata: Vec<(String, String)>,
    /// Sum of the element counts of the graph's initializers (the weights).
    pub parameters: u64,
}

impl OnnxFileInfo {
    /// The value of metadata key `key`, if present (the last one wins, as in ONNX Runtime).
    pub fn metadata_value(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

// Field numbers from onnx.proto.
const MODEL_IR_VERSION: u64 = 1;
const MODEL_GRAPH: u64 = 7;
const MODEL_METADATA_PROPS: u64 = 14;
const GRAPH_INITIALIZER: u64 = 5;
const TENSOR_DIMS: u64 = 1;
const ENTRY_KEY: u64 = 1;
const ENTRY_VALUE: u64 = 2;

/// One protobuf field: its number and payload.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Iterates over the fields of one protobuf message.
struct Fields<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.data.get(self.pos) else {
                return Err(format!("truncated varint at byte {}", self.pos));
            };
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!("varint longer than 10 bytes at byte {}", self.pos))
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], String> {
        let start = self.pos;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| start.checked_add(len))
            .filter(|&end| end <= self.data.len())
            .ok_or_else(|| {
                format!(
                    "field of {len} bytes at byte {start} runs past the end ({} bytes)",
                    self.data.len()
                )
            })?;
        self.pos = end;
        Ok(&self.data[start..end])
    }

    /// The next field, `None` at the end of the message.
    fn next_field(&mut self) -> Result<Option<(u64, Field<'a>)>, String> {
        if self.pos >= self.data.len() {
            return Ok(None);
        }
        let at = self.pos;
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 {
            return Err(format!("field number 0 at byte {at}"));
        }
        let field = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Field::Fixed
            }
            2 => {
                let len = self.varint()?;
                Field::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Field::Fixed
            }
            wire => return Err(format!("unsupported wire type {wire} at byte {at}")),
        };
        Ok(Some((number, field)))
    }
}

/// Decodes the parts of `ModelProto` Demix needs. The error says why `bytes` is not an ONNX
/// model (not protobuf, or no graph).
pub fn inspect(bytes: &[u8]) -> Result<OnnxFileInfo, String> {
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    let mut ir_version = None;
    let mut graph = None;
    let mut metadata = Vec::new();
    let mut fields = Fields::new(bytes);
    while let Some((number, field)) = fields.next_field()? {
        match (number, field) {
            (MODEL_IR_VERSION, Field::Varint(v)) => ir_version = Some(v),
            (MODEL_GRAPH, Field::Bytes(b)) => graph = Some(b),
            (MODEL_METADATA_PROPS, Field::Bytes(b)) => metadata.push(string_entry(b)?),
            _ => {}
        }
    }
    let ir_version = ir_version
        .filter(|&v| v > 0)
        .ok_or("no ir_version field (not an ONNX ModelProto)")?;
    let graph = graph.ok_or("no graph field (not an ONNX ModelProto)")?;
    Ok(OnnxFileInfo {
        ir_version,
        metadata,
        parameters: count_parameters(graph)?,
    })
}

fn string_entry(bytes: &[u8]) -> Result<(String, String), String> {
    let mut key = String::new();
    let mut value = String::new();
    let mut fields = Fields::new(bytes);
    while let Some((number, field)) = fields.next_field()? {
        if let Field::Bytes(b) = field {
            let text = || {
                String::from_utf8(b.to_vec())
                    .map_err(|_| "a metadata_props entry is not valid UTF-8".to_string())
            };
            match number {
                ENTRY_KEY => key = text()?,
                ENTRY_VALUE => value = text()?,
                _ => {}
            }
        }
    }
    Ok((key, value))
}

fn count_parameters(graph: &[u8]) -> Result<u64, String> {
    let mut total = 0u64;
    let mut fields = Fields::new(graph);
    while let Some((number, field)) = fields.next_field()? {
        if let (GRAPH_INITIALIZER, Field::Bytes(tensor)) = (number, field) {
            total = total.saturating_add(tensor_elements(tensor)?);
        }
    }
    Ok(total)
}

fn tensor_elements(tensor: &[u8]) -> Result<u64, String> {
    let mut count = 1u64;
    let mut fields = Fields::new(tensor);
    while let Some((number, field)) = fields.next_field()? {
        match (number, field) {
            (TENSOR_DIMS, Field::Varint(d)) => count = count.saturating_mul(d),
            (TENSOR_DIMS, Field::Bytes(packed)) => {
                let mut dims = Fields::new(packed);
                while dims.pos < packed.len() {
                    count = count.saturating_mul(dims.varint()?);
                }
            }
            _ => {}
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn reads_the_embedded_manifest_and_parameter_count() {
        let info = inspect(&fixture("windowed.onnx")).unwrap();
        assert_eq!(info.ir_version, 8);
        let manifest = info.metadata_value("demix.manifest").unwrap();
        assert!(manifest.contains("\"windowed\""));
        // Initializers: five 1-element int64 tensors, two scalars, one [1, 1, 33, 1] weight.
        assert_eq!(info.parameters, 5 + 2 + 33);
    }

    #[test]
    fn a_file_without_metadata_has_none() {
        let info = inspect(&fixture("no_manifest.onnx")).unwrap();
        assert!(info.metadata.is_empty());
        assert_eq!(info.metadata_value("demix.manifest"), None);
    }

    #[test]
    fn rejects_files_that_are_not_onnx() {
        assert!(inspect(b"").unwrap_err().contains("empty"));
        let text = inspect(b"format_version = 1\nname = \"x\"\n").unwrap_err();
        assert!(text.contains("byte"), "{text}");
        let mut truncated = fixture("windowed.onnx");
        truncated.truncate(truncated.len() / 2);
        assert!(inspect(&truncated)
            .unwrap_err()
            .contains("runs past the end"));
        // A valid protobuf message that is not a model: a single varint field 2.
        assert!(inspect(&[0x10, 0x01]).unwrap_err().contains("ir_version"));
    }
}
