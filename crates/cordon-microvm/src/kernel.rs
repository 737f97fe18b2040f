//! The guest kernel: an uncompressed `vmlinux` pulled out of Debian's bzImage (qemu boots its
//! PVH entry directly, skipping the decompressor), and the kernel modules the agent loads.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum KernelError {
    #[error("not a bzImage: {0}")]
    NotBzImage(&'static str),
    #[error("bzImage payload is not LZ4 (magic {0:02x?})")]
    NotLz4([u8; 4]),
    #[error("LZ4 block at offset {offset}: {why}")]
    Lz4 { offset: usize, why: String },
    #[error("decompressed kernel is not an ELF file")]
    NotElf,
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("kernel module {0} not found in the kernel's module tree")]
    MissingModule(String),
    #[error("{path}: no .modinfo section")]
    NoModinfo { path: PathBuf },
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_le_bytes([s[0], s[1]]))
}

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8).map(|s| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        u64::from_le_bytes(a)
    })
}

const LZ4_LEGACY_MAGIC: u32 = 0x184C_2102;
/// Blocks of the LZ4 legacy format decompress to at most 8 MiB.
const LZ4_LEGACY_BLOCK: usize = 8 << 20;

/// Extracts the ELF `vmlinux` from a bzImage whose payload is LZ4-compressed.
///
/// The x86 boot protocol's setup header gives the number of 512-byte setup sectors (0x1f1),
/// and the offset and length of the compressed payload within the protected-mode part (0x248,
/// 0x24c). The payload is an LZ4 "legacy" stream: a magic, then blocks each preceded by their
/// compressed length; Linux appends the decompressed size as a final 4-byte word.
pub fn extract_vmlinux(bzimage: &[u8]) -> Result<Vec<u8>, KernelError> {
    if bzimage.get(0x202..0x206) != Some(b"HdrS".as_slice()) {
        return Err(KernelError::NotBzImage("no HdrS signature"));
    }
    let setup_sects = match bzimage.get(0x1f1).copied() {
        Some(0) => 4,
        Some(n) => usize::from(n),
        None => return Err(KernelError::NotBzImage("truncated header")),
    };
    let field = |at| {
        le_u32(bzimage, at)
            .and_then(|v| usize::try_from(v).ok())
            .ok_or(KernelError::NotBzImage("truncated header"))
    };
    let start = (setup_sects + 1) * 512 + field(0x248)?;
    let len = field(0x24c)?;
    let payload = bzimage
        .get(start..start + len)
        .ok_or(KernelError::NotBzImage("payload outside the file"))?;
    decompress_lz4_legacy(payload)
}

fn decompress_lz4_legacy(payload: &[u8]) -> Result<Vec<u8>, KernelError> {
    let mut magic = [0u8; 4];
    magic.copy_from_slice(payload.get(..4).ok_or(KernelError::NotLz4([0; 4]))?);
    if u32::from_le_bytes(magic) != LZ4_LEGACY_MAGIC {
        return Err(KernelError::NotLz4(magic));
    }
    let mut out = Vec::new();
    let mut pos = 4;
    while let Some(size) = le_u32(payload, pos) {
        if size == LZ4_LEGACY_MAGIC {
            pos += 4;
            continue;
        }
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        let Some(block) = payload.get(pos + 4..pos.saturating_add(4).saturating_add(size)) else {
            // What is left is Linux's trailing size word (or padding), not a block.
            break;
        };
        let start = out.len();
        out.resize(start + LZ4_LEGACY_BLOCK, 0);
        let n = lz4_flex::block::decompress_into(block, &mut out[start..]).map_err(|e| {
            KernelError::Lz4 {
                offset: pos,
                why: e.to_string(),
            }
        })?;
        out.truncate(start + n);
        pos += 4 + size;
    }
    if !out.starts_with(b"\x7fELF") {
        return Err(KernelError::NotElf);
    }
    Ok(out)
}

/// The contents of an ELF file's `.modinfo` section as key=value pairs.
pub fn modinfo(elf: &[u8]) -> Option<Vec<(String, String)>> {
    if !elf.starts_with(b"\x7fELF") || elf.get(4) != Some(&2) {
        return None;
    }
    let shoff = usize::try_from(le_u64(elf, 0x28)?).ok()?;
    let shentsize = usize::from(le_u16(elf, 0x3a)?);
    let shnum = usize::from(le_u16(elf, 0x3c)?);
    let shstrndx = usize::from(le_u16(elf, 0x3e)?);
    let section = |i: usize| -> Option<(u32, usize, usize)> {
        let h = shoff.checked_add(i.checked_mul(shentsize)?)?;
        Some((
            le_u32(elf, h)?,
            usize::try_from(le_u64(elf, h + 0x18)?).ok()?,
            usize::try_from(le_u64(elf, h + 0x20)?).ok()?,
        ))
    };
    let (_, stroff, strsize) = section(shstrndx)?;
    let names = elf.get(stroff..stroff.checked_add(strsize)?)?;
    for i in 0..shnum {
        let (name, off, size) = section(i)?;
        let name = names.get(usize::try_from(name).ok()?..)?;
        let name = &name[..name.iter().position(|&b| b == 0)?];
        if name == b".modinfo" {
            let data = elf.get(off..off.checked_add(size)?)?;
            return Some(
                data.split(|&b| b == 0)
                    .filter_map(|kv| {
                        let kv = std::str::from_utf8(kv).ok()?;
                        let (k, v) = kv.split_once('=')?;
                        Some((k.to_string(), v.to_string()))
                    })
                    .collect(),
            );
        }
    }
    None
}

/// Module names use `_` and `-` interchangeably; this is the canonical form.
fn canonical(name: &str) -> String {
    name.replace('-', "_")
}

/// Every `.ko` under `dir`, by canonical module name.
pub fn index_modules(dir: &Path) -> Result<BTreeMap<String, PathBuf>, KernelError> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| KernelError::Read {
            path: d.clone(),
            source,
        })?;
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            } else if let Some(stem) = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".ko"))
            {
                out.insert(canonical(stem), p);
            }
        }
    }
    Ok(out)
}

/// The modules `wanted` needs, dependencies first (from each module's `depends=`; Debian
/// ships no modules.dep).
pub fn load_order(
    index: &BTreeMap<String, PathBuf>,
    wanted: &[&str],
) -> Result<Vec<PathBuf>, KernelError> {
    fn visit(
        name: &str,
        index: &BTreeMap<String, PathBuf>,
        seen: &mut HashSet<String>,
        out: &mut Vec<PathBuf>,
    ) -> Result<(), KernelError> {
        let name = canonical(name);
        if !seen.insert(name.clone()) {
            return Ok(());
        }
        let path = index
            .get(&name)
            .ok_or_else(|| KernelError::MissingModule(name.clone()))?;
        let bytes = std::fs::read(path).map_err(|source| KernelError::Read {
            path: path.clone(),
            source,
        })?;
        let info = modinfo(&bytes).ok_or_else(|| KernelError::NoModinfo { path: path.clone() })?;
        for (k, v) in &info {
            if k == "depends" {
                for dep in v.split(',').filter(|d| !d.is_empty()) {
                    visit(dep, index, seen, out)?;
                }
            }
        }
        out.push(path.clone());
        Ok(())
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for w in wanted {
        visit(w, index, &mut seen, &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lz4_legacy_stream() {
        let mut plain = b"\x7fELF".to_vec();
        plain.extend((0..100_000u32).map(|i| u8::try_from(i % 251).unwrap_or(0)));
        let block = lz4_flex::block::compress(&plain);
        let mut stream = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
        stream.extend(u32::try_from(block.len()).unwrap().to_le_bytes());
        stream.extend(&block);
        // Linux's trailing decompressed size.
        stream.extend(u32::try_from(plain.len()).unwrap().to_le_bytes());

        let mut image = vec![0u8; 0x1000];
        image[0x1f1] = 3;
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x248..0x24c].copy_from_slice(&0x10u32.to_le_bytes());
        image[0x24c..0x250].copy_from_slice(&u32::try_from(stream.len()).unwrap().to_le_bytes());
        image.resize(4 * 512 + 0x10, 0);
        image.extend(&stream);
        assert_eq!(extract_vmlinux(&image).unwrap(), plain);
        assert!(matches!(
            extract_vmlinux(&image[..0x100]),
            Err(KernelError::NotBzImage(_))
        ));
    }

    #[test]
    fn modinfo_of_a_minimal_elf() {
        // ELF64 header + .modinfo + .shstrtab, with three section headers (null first).
        let modinfo_data = b"license=GPL\0depends=virtio,virtio_ring\0name=x\0";
        let shstr = b"\0.modinfo\0.shstrtab\0";
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        let mi_off = elf.len();
        elf.extend(modinfo_data);
        let str_off = elf.len();
        elf.extend(shstr);
        while !elf.len().is_multiple_of(8) {
            elf.push(0);
        }
        let shoff = elf.len();
        let header = |name: u32, off: usize, size: usize| {
            let mut h = vec![0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            h
        };
        elf.extend(header(0, 0, 0));
        elf.extend(header(1, mi_off, modinfo_data.len()));
        elf.extend(header(10, str_off, shstr.len()));
        elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
        let info = modinfo(&elf).unwrap();
        assert!(info.contains(&("depends".into(), "virtio,virtio_ring".into())));
        assert_eq!(info.len(), 3);
    }
}
