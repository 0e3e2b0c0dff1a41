//! Ray casting for a spinning lidar. All rays of one azimuth column lie in one vertical
//! half-plane, so the work splits in two: per column, the 2-D (horizontal) entry/exit distances of
//! every box whose angular span covers the column (found through a per-column index); per beam,
//! a 1-D test of the ray's height against each box's [z0, z1], and an analytic ground hit.
//! Distances here are horizontal (r); the 3-D range is r / cos(elevation).

use std::f32::consts::PI;

use super::scene::{Ground, Prim, SENSOR_HEIGHT};

/// Per-column candidate lists (compressed rows): the boxes whose footprint may meet the
/// column's half-plane.
pub struct ColumnIndex {
    pub n: usize,
    pub phase: f32,
    start: Vec<u32>,
    items: Vec<u32>,
}

/// Column azimuth: `phase + a * 2 pi / n`.
pub fn column_azimuth(n: usize, phase: f32, a: usize) -> f32 {
    phase + a as f32 * (2.0 * PI / n as f32)
}

fn footprint(p: &Prim) -> [[f32; 2]; 4] {
    let mut out = [[0.0; 2]; 4];
    for (k, (sx, sy)) in [(1.0, 1.0), (1.0, -1.0), (-1.0, -1.0), (-1.0, 1.0)].into_iter().enumerate() {
        let (lx, ly) = (sx * p.hx, sy * p.hy);
        out[k] = [p.cx + p.c * lx - p.s * ly, p.cy + p.s * lx + p.c * ly];
    }
    out
}

/// Whether the box's footprint contains the sensor's (x, y) = (0, 0).
fn covers_origin(p: &Prim) -> bool {
    let lx = -(p.c * p.cx + p.s * p.cy);
    let ly = -(-p.s * p.cx + p.c * p.cy);
    lx.abs() <= p.hx && ly.abs() <= p.hy
}

impl ColumnIndex {
    pub fn build(prims: &[Prim], n: usize, phase: f32) -> ColumnIndex {
        let step = 2.0 * PI / n as f32;
        // Column range [lo, hi] (may exceed [0, n): wrapped) of each box.
        let ranges: Vec<(i64, i64)> = prims
            .iter()
            .map(|p| {
                if covers_origin(p) {
                    return (0, n as i64 - 1);
                }
                let centre = p.cy.atan2(p.cx);
                let (mut lo, mut hi) = (0.0f32, 0.0f32);
                for [x, y] in footprint(p) {
                    let mut d = y.atan2(x) - centre;
                    if d > PI {
                        d -= 2.0 * PI;
                    } else if d < -PI {
                        d += 2.0 * PI;
                    }
                    lo = lo.min(d);
                    hi = hi.max(d);
                }
                let a0 = ((centre + lo - phase) / step - 0.5).floor() as i64;
                let a1 = ((centre + hi - phase) / step + 0.5).ceil() as i64;
                if a1 - a0 >= n as i64 {
                    (0, n as i64 - 1)
                } else {
                    (a0, a1)
                }
            })
            .collect();
        let mut count = vec![0u32; n + 1];
        for &(lo, hi) in &ranges {
            for a in lo..=hi {
                count[a.rem_euclid(n as i64) as usize + 1] += 1;
            }
        }
        for i in 0..n {
            count[i + 1] += count[i];
        }
        let mut fill = count.clone();
        let mut items = vec![0u32; count[n] as usize];
        for (i, &(lo, hi)) in ranges.iter().enumerate() {
            for a in lo..=hi {
                let c = a.rem_euclid(n as i64) as usize;
                items[fill[c] as usize] = i as u32;
                fill[c] += 1;
            }
        }
        ColumnIndex { n, phase, start: count, items }
    }

    pub fn column(&self, a: usize) -> &[u32] {
        &self.items[self.start[a] as usize..self.start[a + 1] as usize]
    }
}

/// A box crossed by a column's half-plane: horizontal entry and exit distances, the entry face's
/// horizontal normal, and the box's height range.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    pub t0: f32,
    pub t1: f32,
    pub nx: f32,
    pub ny: f32,
    pub z0: f32,
    pub z1: f32,
    pub prim: u32,
    pub actor: u32,
}

/// 2-D slab test of the ray from the origin along (dx, dy) against the box footprint.
pub fn span(p: &Prim, idx: u32, dx: f32, dy: f32) -> Option<Span> {
    let ox = -(p.c * p.cx + p.s * p.cy);
    let oy = -(-p.s * p.cx + p.c * p.cy);
    let ddx = p.c * dx + p.s * dy;
    let ddy = -p.s * dx + p.c * dy;
    let slab = |o: f32, d: f32, h: f32| -> Option<(f32, f32)> {
        if d.abs() < 1e-12 {
            if o.abs() > h {
                None
            } else {
                Some((f32::NEG_INFINITY, f32::INFINITY))
            }
        } else {
            let (a, b) = ((-h - o) / d, (h - o) / d);
            Some(if a < b { (a, b) } else { (b, a) })
        }
    };
    let (x0, x1) = slab(ox, ddx, p.hx)?;
    let (y0, y1) = slab(oy, ddy, p.hy)?;
    let t0 = x0.max(y0);
    let t1 = x1.min(y1);
    if t1 < t0.max(0.0) {
        return None;
    }
    let (lnx, lny) = if x0 > y0 { (-ddx.signum(), 0.0) } else { (0.0, -ddy.signum()) };
    Some(Span {
        t0: t0.max(0.0),
        t1,
        nx: p.c * lnx - p.s * lny,
        ny: p.s * lnx + p.c * lny,
        z0: p.z0,
        z1: p.z1,
        prim: idx,
        actor: p.actor,
    })
}

/// Which face of a box a ray entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Face {
    Side,
    Top,
    Bottom,
}

/// Where the ray `z = r * tan_el` first enters the box of `s` at a horizontal distance below
/// `limit`.
#[inline]
pub fn hit_span(s: &Span, tan_el: f32, limit: f32) -> Option<(f32, Face)> {
    let z_in = s.t0 * tan_el;
    let end = s.t1.min(limit);
    if s.t0 >= end {
        return None;
    }
    if z_in >= s.z0 && z_in <= s.z1 {
        return Some((s.t0, Face::Side));
    }
    if z_in > s.z1 {
        // Above the box: enters through the top if descending fast enough.
        if tan_el < 0.0 {
            let r = s.z1 / tan_el;
            if r < end {
                return Some((r, Face::Top));
            }
        }
        None
    } else {
        if tan_el > 0.0 {
            let r = s.z0 / tan_el;
            if r < end {
                return Some((r, Face::Bottom));
            }
        }
        None
    }
}

/// What part of the ground a ray hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroundPart {
    Road,
    Sidewalk,
    Curb,
}

/// Per-column ground terms: slope along the ray and lateral street drift per metre.
#[derive(Clone, Copy, Debug)]
pub struct GroundColumn {
    pub slope: f32,
    pub vd: f32,
}

pub fn ground_column(g: &Ground, ca: f32, sa: f32) -> GroundColumn {
    GroundColumn { slope: g.sx * ca + g.sy * sa, vd: -g.ds * ca + g.dc * sa }
}

/// The horizontal distance at which the ray `z = r * tan_el` meets the ground (road plane,
/// raised sidewalks beyond the curbs, and the curbs' vertical faces).
pub fn ground_hit(g: &Ground, gc: GroundColumn, tan_el: f32) -> Option<(f32, GroundPart)> {
    let den = gc.slope - tan_el;
    if den <= 1e-6 {
        return None;
    }
    let v = |r: f32| g.v_ego + r * gc.vd;
    let r_walk = (SENSOR_HEIGHT - g.curb) / den;
    if v(r_walk).abs() > g.road_half {
        return Some((r_walk, GroundPart::Sidewalk));
    }
    let r_road = SENSOR_HEIGHT / den;
    let vr = v(r_road);
    if vr.abs() <= g.road_half {
        return Some((r_road, GroundPart::Road));
    }
    let r_curb = (vr.signum() * g.road_half - g.v_ego) / gc.vd;
    Some((r_curb.clamp(r_walk, r_road), GroundPart::Curb))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::scene::{Mat, NO_ACTOR};

    fn unit_box(cx: f32, cy: f32, yaw: f32) -> Prim {
        Prim {
            cx,
            cy,
            hx: 1.0,
            hy: 0.5,
            c: yaw.cos(),
            s: yaw.sin(),
            z0: -1.0,
            z1: 1.0,
            refl: 0.3,
            mat: Mat::Diffuse,
            actor: NO_ACTOR,
        }
    }

    #[test]
    fn synth_slab_hits_front_face() {
        let p = unit_box(10.0, 0.0, 0.0);
        let s = span(&p, 0, 1.0, 0.0).unwrap();
        assert!((s.t0 - 9.0).abs() < 1e-5 && (s.t1 - 11.0).abs() < 1e-5);
        assert!((s.nx + 1.0).abs() < 1e-6 && s.ny.abs() < 1e-6);
        assert!(span(&p, 0, 0.0, 1.0).is_none());
        assert_eq!(hit_span(&s, 0.0, 80.0), Some((s.t0, Face::Side)));
        // A low box: a descending ray passes over the near face and enters through the top.
        let low = Span { z0: -3.0, z1: -1.0, ..s };
        let (r, f) = hit_span(&low, -0.105, 80.0).unwrap();
        assert_eq!(f, Face::Top);
        assert!(r > 9.0 && r < 11.0);
        assert!(hit_span(&s, 0.5, 80.0).is_none());
    }

    #[test]
    fn synth_column_index_finds_box_across_wrap() {
        // A box straight behind the sensor spans the +-pi seam.
        let prims = vec![unit_box(-10.0, 0.0, 0.3), unit_box(0.0, 20.0, 0.0)];
        let idx = ColumnIndex::build(&prims, 2048, 0.0);
        for a in 0..2048 {
            let az = column_azimuth(2048, 0.0, a);
            for (i, p) in prims.iter().enumerate() {
                if span(p, i as u32, az.cos(), az.sin()).is_some() {
                    assert!(idx.column(a).contains(&(i as u32)), "column {a} misses box {i}");
                }
            }
        }
    }
}
