//! Property tests of the Modbus read planner: every point is read exactly once, by a
//! request that keeps the protocol's limits and the gap limit, and no plan has more
//! requests than it must.

use lwgate_bridges::modbus::{plan_reads, PlanOptions, Point, ReadRequest, RegisterKind};
use proptest::prelude::*;

fn any_kind() -> impl Strategy<Value = RegisterKind> {
    prop_oneof![
        Just(RegisterKind::Coil),
        Just(RegisterKind::DiscreteInput),
        Just(RegisterKind::InputRegister),
        Just(RegisterKind::HoldingRegister),
    ]
}

/// Points of realistic sizes (1, 2, 4 or up to 16 registers) clustered in a small
/// address space so that merges, gaps and overlaps all happen, plus some near 65535.
fn any_points() -> impl Strategy<Value = Vec<Point<usize>>> {
    let point = (
        any_kind(),
        prop_oneof![4 => 0u16..600, 1 => 65000u16..=65535],
        prop_oneof![Just(1u16), Just(2), Just(4), 1u16..=16],
    );
    prop::collection::vec(point, 0..60).prop_map(|ps| {
        ps.into_iter()
            .enumerate()
            .map(|(id, (kind, address, count))| Point {
                id,
                kind,
                address: address.min(65535 - (count - 1)),
                count,
            })
            .collect()
    })
}

fn any_options() -> impl Strategy<Value = PlanOptions> {
    (0u16..=20, 16u16..=125, 16u16..=2000).prop_map(|(max_gap, max_registers, max_bits)| {
        PlanOptions {
            max_gap,
            max_registers,
            max_bits,
        }
    })
}

/// Largest run of items in `request` that no served point covers.
fn largest_gap(request: &ReadRequest<usize>) -> u16 {
    let mut covered = vec![false; usize::from(request.count)];
    for s in &request.points {
        for c in &mut covered[usize::from(s.offset)..usize::from(s.offset + s.count)] {
            *c = true;
        }
    }
    covered
        .split(|&c| c)
        .map(|run| run.len() as u16)
        .max()
        .unwrap_or(0)
}

proptest! {
    #[test]
    fn every_point_is_read_once_within_the_limits(
        points in any_points(),
        options in any_options(),
    ) {
        let plan = plan_reads(&points, &options).unwrap();
        let mut served = vec![0; points.len()];
        for r in &plan {
            prop_assert!(r.count >= 1 && r.count <= options.limit(r.kind));
            prop_assert!(r.count <= r.kind.max_read());
            prop_assert!(u32::from(r.address) + u32::from(r.count) <= 1 << 16);
            prop_assert!(largest_gap(r) <= options.max_gap, "{:?}", r);
            // The request is trimmed to its points: both ends are used.
            prop_assert!(r.points.iter().any(|s| s.offset == 0));
            prop_assert!(r.points.iter().any(|s| s.offset + s.count == r.count));
            for s in &r.points {
                let p = &points[s.id];
                served[s.id] += 1;
                prop_assert_eq!(p.kind, r.kind);
                prop_assert_eq!(u32::from(r.address) + u32::from(s.offset), u32::from(p.address));
                prop_assert_eq!(s.count, p.count);
                prop_assert!(s.offset + s.count <= r.count);
            }
        }
        prop_assert!(served.iter().all(|&n| n == 1), "served counts {:?}", served);
        let keys: Vec<_> = plan.iter().map(|r| (r.kind, r.address)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        prop_assert_eq!(&keys, &sorted);
    }

    #[test]
    fn the_plan_does_not_depend_on_input_order(
        points in any_points(),
        options in any_options(),
        seed in any::<u64>(),
    ) {
        let plan = plan_reads(&points, &options).unwrap();
        let mut shuffled = points.clone();
        // A cheap deterministic shuffle: sort by a hash of (seed, index).
        shuffled.sort_by_key(|p| (p.id as u64 ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let again = plan_reads(&shuffled, &options).unwrap();
        let spans = |plan: &[ReadRequest<usize>]| -> Vec<_> {
            plan.iter().map(|r| (r.kind, r.address, r.count)).collect()
        };
        prop_assert_eq!(spans(&plan), spans(&again));
    }

    #[test]
    fn no_plan_has_more_requests_than_the_best(
        points in prop::collection::vec((0u16..40, 1u16..=6), 1..=7),
        max_gap in 0u16..=4,
        max_registers in 6u16..=14,
    ) {
        let points: Vec<_> = points
            .into_iter()
            .enumerate()
            .map(|(id, (address, count))| Point {
                id,
                kind: RegisterKind::HoldingRegister,
                address,
                count,
            })
            .collect();
        let options = PlanOptions { max_gap, max_registers, ..PlanOptions::default() };
        let plan = plan_reads(&points, &options).unwrap();
        let best = fewest_requests(&points, &options);
        prop_assert_eq!(plan.len(), best);
    }
}

/// The fewest groups the points can be split into such that each group fits one
/// request, by trying every partition (few points only). Only the span prunes early:
/// a gap in a partial group may still be filled by a point added later.
fn fewest_requests(points: &[Point<usize>], options: &PlanOptions) -> usize {
    fn span_fits(group: &[&Point<usize>], options: &PlanOptions) -> bool {
        let start = group.iter().map(|p| p.address).min().unwrap_or(0);
        let end = group.iter().map(|p| p.address + p.count).max().unwrap_or(0);
        end - start <= options.max_registers
    }
    fn feasible(group: &[&Point<usize>], options: &PlanOptions) -> bool {
        let start = group
            .iter()
            .map(|p| u32::from(p.address))
            .min()
            .unwrap_or(0);
        let end = group
            .iter()
            .map(|p| u32::from(p.address) + u32::from(p.count))
            .max()
            .unwrap_or(0);
        if end - start > u32::from(options.max_registers) {
            return false;
        }
        let mut by_start: Vec<_> = group.to_vec();
        by_start.sort_by_key(|p| p.address);
        let mut covered = start;
        for p in by_start {
            if u32::from(p.address) > covered + u32::from(options.max_gap) {
                return false;
            }
            covered = covered.max(u32::from(p.address) + u32::from(p.count));
        }
        true
    }
    fn go<'a>(
        rest: &[&'a Point<usize>],
        groups: &mut Vec<Vec<&'a Point<usize>>>,
        options: &PlanOptions,
        best: &mut usize,
    ) {
        if groups.len() >= *best {
            return;
        }
        let Some((first, rest)) = rest.split_first() else {
            if groups.iter().all(|g| feasible(g, options)) {
                *best = groups.len();
            }
            return;
        };
        for i in 0..groups.len() {
            groups[i].push(first);
            if span_fits(&groups[i], options) {
                go(rest, groups, options, best);
            }
            groups[i].pop();
        }
        groups.push(vec![first]);
        go(rest, groups, options, best);
        groups.pop();
    }
    let refs: Vec<_> = points.iter().collect();
    let mut best = usize::MAX;
    go(&refs, &mut Vec::new(), options, &mut best);
    best
}
