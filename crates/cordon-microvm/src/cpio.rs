//! A writer for the cpio "newc" format, the one the Linux kernel unpacks as an initramfs.
//!
//! Each entry is a 110-byte ASCII header (magic `070701`, then thirteen 8-digit hex fields),
//! the NUL-terminated name padded to 4 bytes, then the data padded to 4 bytes. The archive
//! ends with an entry named `TRAILER!!!`.

/// An archive under construction, in memory.
#[derive(Debug, Default)]
pub struct Archive {
    out: Vec<u8>,
    next_ino: u32,
}

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFLNK: u32 = 0o120_000;

impl Archive {
    pub fn new() -> Self {
        Archive {
            out: Vec::new(),
            next_ino: 1,
        }
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        let ino = self.next_ino;
        self.next_ino += 1;
        let nlink = if mode & S_IFDIR != 0 { 2 } else { 1 };
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime: fixed, so equal inputs give equal archives
            u32::try_from(data.len()).unwrap_or(u32::MAX),
            0,
            0,
            rdev.0,
            rdev.1,
            u32::try_from(name.len() + 1).unwrap_or(u32::MAX),
            0,
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    pub fn dir(&mut self, name: &str, perm: u32) {
        self.entry(name, S_IFDIR | perm, (0, 0), &[]);
    }

    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, S_IFREG | perm, (0, 0), data);
    }

    pub fn char_device(&mut self, name: &str, perm: u32, major: u32, minor: u32) {
        self.entry(name, S_IFCHR | perm, (major, minor), &[]);
    }

    pub fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, S_IFLNK | 0o777, (0, 0), target.as_bytes());
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        // The kernel reads the initramfs in 512-byte units comfortably; pad like cpio(1).
        while !self.out.len().is_multiple_of(512) {
            self.out.push(0);
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout() {
        let mut a = Archive::new();
        a.dir("dev", 0o755);
        a.char_device("dev/console", 0o600, 5, 1);
        a.file("init", 0o755, b"hello");
        let bytes = a.finish();
        assert_eq!(&bytes[..6], b"070701");
        // First entry: ino 1, mode 040755, name "dev" (namesize 4): header + name = 114,
        // padded to 116.
        let header = std::str::from_utf8(&bytes[..110]).unwrap();
        assert_eq!(&header[6..14], "00000001");
        assert_eq!(&header[14..22], "000041ed");
        assert_eq!(&header[94..102], "00000004");
        assert_eq!(&bytes[110..114], b"dev\0");
        assert_eq!(&bytes[116..122], b"070701");
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("dev/console"));
        assert!(text.contains("hello"));
        assert!(text.contains("TRAILER!!!"));
        assert_eq!(bytes.len() % 512, 0);
        // The console node carries its device numbers in rdevmajor/rdevminor.
        let second = &text[116..];
        assert_eq!(&second[6 + 8 * 9..6 + 8 * 10], "00000005");
        assert_eq!(&second[6 + 8 * 10..6 + 8 * 11], "00000001");
    }
}
