//! The classic libpcap file format (what `tcpdump -w` writes and every tool reads), for
//! `vswitchctl capture`: a 24-byte global header, then per packet a 16-byte record header and
//! the captured bytes. Little-endian, microsecond timestamps (magic `0xa1b2c3d4`), link type
//! 1 (Ethernet).
//!
//! Reference: <https://www.tcpdump.org/manpages/pcap-savefile.5.html>.

use std::io::{self, Write};

/// The magic number of a microsecond-resolution file.
pub const MAGIC_USEC: u32 = 0xa1b2_c3d4;
/// `LINKTYPE_ETHERNET`.
pub const LINKTYPE_ETHERNET: u32 = 1;

/// One packet to write.
pub struct Packet<'a> {
    /// ns since the Unix epoch.
    pub ts_ns: u64,
    /// Its length on the wire.
    pub orig_len: u32,
    /// The bytes captured (at most the snap length).
    pub data: &'a [u8],
}

/// The global header of a file whose packets were cut to `snaplen` bytes.
pub fn global_header(snaplen: u32) -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&MAGIC_USEC.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes()); // version 2.4
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    // thiszone (8..12) and sigfigs (12..16) are 0.
    h[16..20].copy_from_slice(&snaplen.to_le_bytes());
    h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    h
}

/// A packet's record header.
pub fn record_header(p: &Packet<'_>) -> [u8; 16] {
    let mut h = [0u8; 16];
    let secs = (p.ts_ns / 1_000_000_000) as u32;
    let usecs = (p.ts_ns % 1_000_000_000 / 1000) as u32;
    h[0..4].copy_from_slice(&secs.to_le_bytes());
    h[4..8].copy_from_slice(&usecs.to_le_bytes());
    h[8..12].copy_from_slice(&(p.data.len() as u32).to_le_bytes());
    h[12..16].copy_from_slice(&p.orig_len.max(p.data.len() as u32).to_le_bytes());
    h
}

/// Writes a whole file: the global header, then every packet.
pub fn write<'a>(
    out: &mut impl Write,
    snaplen: u32,
    packets: impl IntoIterator<Item = Packet<'a>>,
) -> io::Result<()> {
    out.write_all(&global_header(snaplen))?;
    for p in packets {
        out.write_all(&record_header(&p))?;
        out.write_all(p.data)?;
    }
    out.flush()
}

/// Decodes hex (as the API sends packet bytes); `None` if it is not an even run of hex digits.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    let b = text.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    b.chunks(2).map(|p| Some(digit(p[0])? << 4 | digit(p[1])?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader written from the format's description, independent of the writer's helpers:
    /// (snaplen, linktype, [(ts_sec, ts_usec, orig_len, data)]).
    #[allow(clippy::type_complexity)]
    fn read(f: &[u8]) -> (u32, u32, Vec<(u32, u32, u32, Vec<u8>)>) {
        let u32_at = |at: usize| u32::from_le_bytes(f[at..at + 4].try_into().unwrap());
        assert_eq!(&f[0..4], &[0xd4, 0xc3, 0xb2, 0xa1], "little-endian µs magic");
        assert_eq!(&f[4..8], &[2, 0, 4, 0], "version 2.4");
        assert_eq!(&f[8..16], &[0; 8], "thiszone and sigfigs");
        let mut at = 24;
        let mut recs = Vec::new();
        while at < f.len() {
            let incl = u32_at(at + 8) as usize;
            recs.push((
                u32_at(at),
                u32_at(at + 4),
                u32_at(at + 12),
                f[at + 16..at + 16 + incl].to_vec(),
            ));
            at += 16 + incl;
        }
        assert_eq!(at, f.len(), "no trailing bytes");
        (u32_at(16), u32_at(20), recs)
    }

    #[test]
    fn a_file_reads_back_byte_for_byte() {
        let a: Vec<u8> = (0..60).collect();
        let b = vec![0xab; 256];
        let mut f = Vec::new();
        write(
            &mut f,
            256,
            [
                Packet { ts_ns: 1_700_000_000_123_456_789, orig_len: 60, data: &a },
                Packet { ts_ns: 1_700_000_001_000_000_999, orig_len: 1514, data: &b },
            ],
        )
        .unwrap();
        assert_eq!(f.len(), 24 + 16 + 60 + 16 + 256);
        let (snaplen, linktype, recs) = read(&f);
        assert_eq!((snaplen, linktype), (256, 1));
        assert_eq!(recs[0], (1_700_000_000, 123_456, 60, a));
        assert_eq!(recs[1], (1_700_000_001, 0, 1514, b));
    }

    #[test]
    fn tcpdump_reads_it_when_installed() {
        let Ok(dir) = std::env::temp_dir().canonicalize() else { return };
        let path = dir.join(format!("vswitchctl-pcap-{}.pcap", std::process::id()));
        // An Ethernet/IPv4/ICMP echo request.
        let frame = from_hex(
            "020000000002020000000001080045000054000040004001b8a60a0000010a000002\
             0800f7ff00010001",
        )
        .unwrap();
        let mut f = Vec::new();
        write(&mut f, 256, [Packet { ts_ns: 1_000_000_000, orig_len: 98, data: &frame }]).unwrap();
        std::fs::write(&path, &f).unwrap();
        let out = std::process::Command::new("tcpdump").args(["-nn", "-r"]).arg(&path).output();
        let _ = std::fs::remove_file(&path);
        let Ok(out) = out else { return }; // no tcpdump here: the byte-level test stands
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("10.0.0.1 > 10.0.0.2: ICMP echo request"), "{text}");
    }

    #[test]
    fn hex_decodes_or_refuses() {
        assert_eq!(from_hex("00ffA0"), Some(vec![0, 0xff, 0xa0]));
        assert_eq!(from_hex("0"), None);
        assert_eq!(from_hex("zz"), None);
    }
}
