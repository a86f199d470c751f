//! What the fuzz targets share: ways to cut one input into reads.

/// The ways each target cuts its input into reads, none longer than `most`:
/// as large as allowed, one byte at a time, and in sizes drawn from the
/// input itself, so the same bytes always cut the same way.
pub fn cuts(data: &[u8], most: usize) -> [Vec<&[u8]>; 3] {
    let most = most.max(1);
    let whole = data.chunks(most).collect();
    let bytes = data.chunks(1).collect();
    let mut drawn = Vec::new();
    let mut state = seed(data);
    let mut rest = data;
    while !rest.is_empty() {
        state = xorshift(state);
        // Mostly short reads, sometimes long ones.
        let limit = if state & 3 == 0 { most } else { 16.min(most) };
        let len = 1 + (state >> 8) as usize % limit;
        let (read, after) = rest.split_at(len.min(rest.len()));
        drawn.push(read);
        rest = after;
    }
    [whole, bytes, drawn]
}

fn seed(data: &[u8]) -> u64 {
    // FNV-1a: any fixed mixing of the input will do.
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    }) | 1
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}
