//! Read coalescing: the fewest read requests that fetch every mapped point.
//!
//! Polling one request per point is slow on a serial line (each request costs a
//! turnaround of several milliseconds at 9600 baud) and some devices limit the
//! request rate, so neighbouring points are read together. Reading registers that no
//! point maps (a gap) saves requests but some devices answer a request that touches
//! an unmapped address with "illegal data address" and fail it whole, hence
//! [`PlanOptions::max_gap`], where 0 means only adjacent or overlapping points share a
//! request.

use std::fmt;

use thiserror::Error;

use super::codec::{PointCodec, RegisterKind, MAX_READ_BITS, MAX_READ_REGISTERS};

/// One mapped point to read: `count` registers (bits for a coil or discrete input)
/// from `address` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point<Id> {
    pub id: Id,
    pub kind: RegisterKind,
    pub address: u16,
    pub count: u16,
}

impl<Id> Point<Id> {
    /// The point a codec reads at `address`, with as many registers as its type has.
    pub fn for_codec(id: Id, address: u16, codec: &PointCodec) -> Self {
        Point {
            id,
            kind: codec.kind(),
            address,
            count: codec.register_count(),
        }
    }

    fn end(&self) -> u32 {
        u32::from(self.address) + u32::from(self.count)
    }
}

/// Limits a plan keeps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanOptions {
    /// Most unmapped registers (bits for coils and discrete inputs) read between two
    /// points in one request; 0 reads only adjacent or overlapping points together.
    pub max_gap: u16,
    /// Most registers per request, at most 125 (some devices accept fewer).
    pub max_registers: u16,
    /// Most bits per request, at most 2000.
    pub max_bits: u16,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            // A few spare registers between fields is common in register maps; wider
            // gaps are more likely to be unimplemented blocks.
            max_gap: 8,
            max_registers: MAX_READ_REGISTERS,
            max_bits: MAX_READ_BITS,
        }
    }
}

impl PlanOptions {
    /// Most items one request of `kind` may read under these options.
    pub fn limit(&self, kind: RegisterKind) -> u16 {
        if kind.is_bit() {
            self.max_bits
        } else {
            self.max_registers
        }
    }
}

/// One read request and the points it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest<Id> {
    pub kind: RegisterKind,
    pub address: u16,
    pub count: u16,
    /// In address order (then by count, then by input order).
    pub points: Vec<Served<Id>>,
}

/// A point inside a request: its items are `offset..offset + count` of the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served<Id> {
    pub id: Id,
    pub offset: u16,
    pub count: u16,
}

impl<Id> ReadRequest<Id> {
    /// Each served point with its items of `response`, the request's answer in address
    /// order. A longer response is accepted because bit responses come in whole bytes
    /// and many clients hand back the padding bits.
    pub fn split<'a, T>(
        &'a self,
        response: &'a [T],
    ) -> Result<impl Iterator<Item = (&'a Id, &'a [T])> + 'a, PlanError> {
        if response.len() < usize::from(self.count) {
            return Err(PlanError::ShortResponse {
                kind: self.kind,
                address: self.address,
                expected: self.count,
                got: response.len(),
            });
        }
        Ok(self.points.iter().map(move |p| {
            let start = usize::from(p.offset);
            (&p.id, &response[start..start + usize::from(p.count)])
        }))
    }
}

/// Why no plan could be made, or a response does not fit its request.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlanError {
    #[error("point {id} ({kind} {address}) spans no registers")]
    Empty {
        id: String,
        kind: RegisterKind,
        address: u16,
    },
    #[error("point {id} ({kind} {address}, {count} long) runs past the last address 65535")]
    PastEnd {
        id: String,
        kind: RegisterKind,
        address: u16,
        count: u16,
    },
    #[error(
        "point {id} ({kind} {address}) is {count} long, more than one request may read ({limit})"
    )]
    TooLong {
        id: String,
        kind: RegisterKind,
        address: u16,
        count: u16,
        limit: u16,
    },
    #[error("{what} {value} is not allowed: expected 1 to {max}")]
    BadLimit {
        what: &'static str,
        value: u16,
        max: u16,
    },
    #[error("response to the {kind} read at {address} has {got} items, expected {expected}")]
    ShortResponse {
        kind: RegisterKind,
        address: u16,
        expected: u16,
        got: usize,
    },
}

/// The fewest requests, each within the options' limits, that read every point.
///
/// Requests come sorted by kind then address; each point is served by exactly one
/// request of its kind. Points may overlap (two bits of one register, say).
/// Greedy over points sorted by address: a request grows while the next point
/// starts within `max_gap` of what it covers and still fits the size limit. That is
/// the fewest requests (the property tests check it against exhaustive search); it
/// can make two requests overlap, when a point that does not fit starts inside the
/// previous request, since a point is never split over two requests.
pub fn plan_reads<Id: Clone + fmt::Debug>(
    points: &[Point<Id>],
    options: &PlanOptions,
) -> Result<Vec<ReadRequest<Id>>, PlanError> {
    check_limit("max_registers", options.max_registers, MAX_READ_REGISTERS)?;
    check_limit("max_bits", options.max_bits, MAX_READ_BITS)?;
    for p in points {
        check_point(p, options)?;
    }
    let mut order: Vec<usize> = (0..points.len()).collect();
    // The index last makes the order total, so equal points keep their input order.
    order.sort_by_key(|&i| (points[i].kind, points[i].address, points[i].count, i));

    let mut requests: Vec<ReadRequest<Id>> = Vec::new();
    for i in order {
        let p = &points[i];
        let fits = requests.last().is_some_and(|r| {
            let covered_end = u32::from(r.address) + u32::from(r.count);
            r.kind == p.kind
                && u32::from(p.address) <= covered_end + u32::from(options.max_gap)
                && covered_end.max(p.end()) - u32::from(r.address)
                    <= u32::from(options.limit(p.kind))
        });
        match requests.last_mut() {
            Some(r) if fits => {
                let end = (u32::from(r.address) + u32::from(r.count)).max(p.end());
                // Both fit in u16: `fits` bounds the span by a u16 limit.
                r.count = (end - u32::from(r.address)) as u16;
                r.points.push(Served {
                    id: p.id.clone(),
                    offset: p.address - r.address,
                    count: p.count,
                });
            }
            _ => requests.push(ReadRequest {
                kind: p.kind,
                address: p.address,
                count: p.count,
                points: vec![Served {
                    id: p.id.clone(),
                    offset: 0,
                    count: p.count,
                }],
            }),
        }
    }
    Ok(requests)
}

fn check_limit(what: &'static str, value: u16, max: u16) -> Result<(), PlanError> {
    if value == 0 || value > max {
        return Err(PlanError::BadLimit { what, value, max });
    }
    Ok(())
}

fn check_point<Id: fmt::Debug>(p: &Point<Id>, options: &PlanOptions) -> Result<(), PlanError> {
    let id = || format!("{:?}", p.id);
    if p.count == 0 {
        return Err(PlanError::Empty {
            id: id(),
            kind: p.kind,
            address: p.address,
        });
    }
    if p.end() > 1 << 16 {
        return Err(PlanError::PastEnd {
            id: id(),
            kind: p.kind,
            address: p.address,
            count: p.count,
        });
    }
    let limit = options.limit(p.kind);
    if p.count > limit {
        return Err(PlanError::TooLong {
            id: id(),
            kind: p.kind,
            address: p.address,
            count: p.count,
            limit,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use RegisterKind::*;

    fn pt(id: u32, kind: RegisterKind, address: u16, count: u16) -> Point<u32> {
        Point {
            id,
            kind,
            address,
            count,
        }
    }

    /// (kind, address, count, [(id, offset)]) of each request.
    type Shape = (RegisterKind, u16, u16, Vec<(u32, u16)>);

    fn shape(plan: &[ReadRequest<u32>]) -> Vec<Shape> {
        plan.iter()
            .map(|r| {
                let served = r.points.iter().map(|s| (s.id, s.offset)).collect();
                (r.kind, r.address, r.count, served)
            })
            .collect()
    }

    #[test]
    fn merges_adjacent_and_small_gaps_per_kind() {
        let points = [
            pt(1, HoldingRegister, 10, 2),
            pt(2, HoldingRegister, 12, 1),
            pt(3, HoldingRegister, 20, 2), // gap of 7 after 13
            pt(4, InputRegister, 12, 1),   // another table: its own request
            pt(5, HoldingRegister, 40, 1), // gap of 18
        ];
        let plan = plan_reads(&points, &PlanOptions::default()).unwrap();
        assert_eq!(
            shape(&plan),
            vec![
                (InputRegister, 12, 1, vec![(4, 0)]),
                (HoldingRegister, 10, 12, vec![(1, 0), (2, 2), (3, 10)]),
                (HoldingRegister, 40, 1, vec![(5, 0)]),
            ]
        );
    }

    #[test]
    fn max_gap_zero_joins_only_adjacent_or_overlapping() {
        let points = [
            pt(1, HoldingRegister, 0, 1),
            pt(2, HoldingRegister, 1, 1),
            pt(3, HoldingRegister, 3, 1),
            pt(4, HoldingRegister, 3, 1), // bit 4 of the same register as 3
        ];
        let options = PlanOptions {
            max_gap: 0,
            ..PlanOptions::default()
        };
        let plan = plan_reads(&points, &options).unwrap();
        assert_eq!(
            shape(&plan),
            vec![
                (HoldingRegister, 0, 2, vec![(1, 0), (2, 1)]),
                (HoldingRegister, 3, 1, vec![(3, 0), (4, 0)]),
            ]
        );
    }

    #[test]
    fn splits_at_the_size_limit() {
        // 63 f64-sized points back to back: 252 registers, so 125 + 125 + 2 would
        // split points; whole points give 31 + 31 + 1 points of 4 registers.
        let points: Vec<_> = (0..63)
            .map(|i| pt(i, InputRegister, i as u16 * 4, 4))
            .collect();
        let plan = plan_reads(&points, &PlanOptions::default()).unwrap();
        let counts: Vec<_> = plan.iter().map(|r| (r.address, r.count)).collect();
        assert_eq!(counts, vec![(0, 124), (124, 124), (248, 4)]);
    }

    #[test]
    fn coils_use_the_bit_limit() {
        let points = [
            pt(1, Coil, 0, 1),
            pt(2, Coil, 1999, 1),
            pt(3, Coil, 2000, 1),
        ];
        let plan = plan_reads(
            &points,
            &PlanOptions {
                max_gap: 2000,
                ..PlanOptions::default()
            },
        )
        .unwrap();
        assert_eq!(
            shape(&plan),
            vec![
                (Coil, 0, 2000, vec![(1, 0), (2, 1999)]),
                (Coil, 2000, 1, vec![(3, 0)])
            ]
        );
    }

    #[test]
    fn split_hands_each_point_its_registers() {
        let points = [
            pt(1, HoldingRegister, 100, 2),
            pt(2, HoldingRegister, 103, 1),
        ];
        let plan = plan_reads(&points, &PlanOptions::default()).unwrap();
        let response = [0xA, 0xB, 0xC, 0xD];
        let parts: Vec<_> = plan[0].split(&response).unwrap().collect();
        assert_eq!(parts, vec![(&1, &[0xA, 0xB][..]), (&2, &[0xD][..])]);
        assert!(matches!(
            plan[0].split(&response[..3]),
            Err(PlanError::ShortResponse {
                expected: 4,
                got: 3,
                ..
            })
        ));
    }

    #[test]
    fn refuses_points_no_request_can_read() {
        let opts = PlanOptions::default();
        let err = plan_reads(&[pt(7, HoldingRegister, 5, 0)], &opts).unwrap_err();
        assert_eq!(
            err.to_string(),
            "point 7 (holding register 5) spans no registers"
        );
        let err = plan_reads(&[pt(7, HoldingRegister, 65535, 2)], &opts).unwrap_err();
        assert!(matches!(err, PlanError::PastEnd { .. }), "{err}");
        let err = plan_reads(&[pt(7, InputRegister, 0, 126)], &opts).unwrap_err();
        assert!(
            err.to_string()
                .contains("more than one request may read (125)"),
            "{err}"
        );
        // The very last register is fine.
        assert!(plan_reads(&[pt(7, HoldingRegister, 65535, 1)], &opts).is_ok());
    }

    #[test]
    fn refuses_limits_outside_the_protocol() {
        let opts = PlanOptions {
            max_registers: 126,
            ..PlanOptions::default()
        };
        let err = plan_reads::<u32>(&[], &opts).unwrap_err();
        assert_eq!(
            err.to_string(),
            "max_registers 126 is not allowed: expected 1 to 125"
        );
    }
}
