//! Reading capture files, pcap and pcapng alike, through libpcap (the `pcap` crate) so that
//! every format and link type libpcap knows is read the way tcpdump reads it.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An error opening or reading a capture, with the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The file could not be opened as a capture.
    #[error("{path}: cannot read capture: {message}")]
    Open { path: String, message: String },
    /// A record could not be read (a truncated file, usually).
    #[error("{path}: {message}")]
    Read { path: String, message: String },
}

/// One captured frame.
#[derive(Debug)]
pub struct Frame<'a> {
    pub time: SystemTime,
    /// The file's link type (pcap `DLT_*`), as `Engine::process` takes it.
    pub linktype: u32,
    pub data: &'a [u8],
}

/// An open capture file.
pub struct CaptureFile {
    path: String,
    capture: pcap::Capture<pcap::Offline>,
    linktype: u32,
}

impl std::fmt::Debug for CaptureFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureFile")
            .field("path", &self.path)
            .field("linktype", &self.linktype)
            .finish()
    }
}

impl CaptureFile {
    pub fn open(path: &Path) -> Result<CaptureFile, CaptureError> {
        let label = path.display().to_string();
        let capture = pcap::Capture::from_file(path).map_err(|err| CaptureError::Open {
            path: label.clone(),
            message: err.to_string(),
        })?;
        let linktype = u32::try_from(capture.get_datalink().0).unwrap_or(u32::MAX);
        Ok(CaptureFile {
            path: label,
            capture,
            linktype,
        })
    }

    pub fn linktype(&self) -> u32 {
        self.linktype
    }

    /// The next frame, `Ok(None)` at the end of the file.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        match self.capture.next_packet() {
            Ok(packet) => {
                let ts = packet.header.ts;
                let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
                let micros = u64::try_from(ts.tv_usec).unwrap_or(0);
                Ok(Some(Frame {
                    time: UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros),
                    linktype: self.linktype,
                    data: packet.data,
                }))
            }
            Err(pcap::Error::NoMorePackets) => Ok(None),
            Err(err) => Err(CaptureError::Read {
                path: self.path.clone(),
                message: err.to_string(),
            }),
        }
    }
}
