//! Procedural street scenes in the lidar frame (x forward, y left, z up, sensor at the origin,
//! road under the sensor at z = -1.73): ground with slope, curbs and sidewalks; buildings, walls,
//! vegetation, poles and signs; labelled actors (cars, vans, trucks, pedestrians, sitting people,
//! cyclists) built from a few oriented boxes each.
//!
//! Everything is generated in street coordinates (u along the street, v across it, v = 0 on the
//! centre line) and placed through the street's yaw and the ego car's lateral position.

use std::f32::consts::PI;

/// Sensor height above the road (KITTI's HDL-64E mount).
pub const SENSOR_HEIGHT: f32 = 1.73;

/// Small deterministic PRNG (SplitMix64): a frame's scene depends only on its seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    /// The stream `stream` of frame `frame` of dataset seed `seed`.
    pub fn for_frame(seed: u64, frame: u64, stream: u64) -> Rng {
        Rng(mix64(
            mix64(seed ^ 0x005e_ed0f_f1a3) ^ mix64(frame.wrapping_add(0x1234_5678)) ^ stream.wrapping_mul(0x9e37),
        ))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// Uniform in [0, 1).
    pub fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Uniform in [a, b).
    pub fn range(&mut self, a: f32, b: f32) -> f32 {
        a + (b - a) * self.f32()
    }

    pub fn chance(&mut self, p: f32) -> bool {
        self.f32() < p
    }

    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.f32().max(1e-7);
        let u2 = self.f32();
        (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
    }

    /// Picks an index with probability proportional to `weights`.
    pub fn pick(&mut self, weights: &[f32]) -> usize {
        let total: f32 = weights.iter().sum();
        let mut r = self.f32() * total;
        for (i, w) in weights.iter().enumerate() {
            if r < *w {
                return i;
            }
            r -= w;
        }
        weights.len() - 1
    }
}

/// How a surface returns the laser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mat {
    /// Lambertian-like (walls, paint, clothing, asphalt).
    Diffuse,
    /// Retroreflective (signs, licence plates, reflectors): bright at any incidence.
    Retro,
    /// Glass: mostly no return, weak when it returns.
    Glass,
    /// Foliage: porous, noisy intensity, some rays pass.
    Foliage,
}

/// An oriented box: footprint centre (cx, cy), half extents (hx along the box's own x axis,
/// hy along its y axis), yaw as (c, s) = (cos, sin), vertical extent [z0, z1].
#[derive(Clone, Debug)]
pub struct Prim {
    pub cx: f32,
    pub cy: f32,
    pub hx: f32,
    pub hy: f32,
    pub c: f32,
    pub s: f32,
    pub z0: f32,
    pub z1: f32,
    pub refl: f32,
    pub mat: Mat,
    /// Index of the actor this box belongs to, or [`NO_ACTOR`].
    pub actor: u32,
}

pub const NO_ACTOR: u32 = u32::MAX;

/// KITTI object classes the generator produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Car,
    Van,
    Truck,
    Pedestrian,
    PersonSitting,
    Cyclist,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::Car => "Car",
            Class::Van => "Van",
            Class::Truck => "Truck",
            Class::Pedestrian => "Pedestrian",
            Class::PersonSitting => "Person_sitting",
            Class::Cyclist => "Cyclist",
        }
    }
}

/// A labelled object: bottom centre (x, y, z) in the lidar frame, length (along yaw), width,
/// height, yaw (lidar frame, counter-clockwise from x).
#[derive(Clone, Debug)]
pub struct Actor {
    pub class: Class,
    pub x: f32,
    pub y: f32,
    pub z: f32,
    pub l: f32,
    pub w: f32,
    pub h: f32,
    pub yaw: f32,
}

impl Actor {
    /// The 8 corners of the 3D box in the lidar frame (bottom four, then top four).
    pub fn corners(&self) -> [[f32; 3]; 8] {
        let (s, c) = self.yaw.sin_cos();
        let mut out = [[0.0; 3]; 8];
        for (k, (dx, dy)) in [(1.0, 1.0), (1.0, -1.0), (-1.0, -1.0), (-1.0, 1.0)].into_iter().enumerate() {
            let lx = dx * self.l / 2.0;
            let ly = dy * self.w / 2.0;
            let x = self.x + c * lx - s * ly;
            let y = self.y + s * lx + c * ly;
            out[k] = [x, y, self.z];
            out[k + 4] = [x, y, self.z + self.h];
        }
        out
    }

    /// Whether a lidar point lies inside the box grown by `margin` metres.
    pub fn contains(&self, p: [f32; 3], margin: f32) -> bool {
        let (s, c) = self.yaw.sin_cos();
        let (dx, dy) = (p[0] - self.x, p[1] - self.y);
        let lx = c * dx + s * dy;
        let ly = -s * dx + c * dy;
        lx.abs() <= self.l / 2.0 + margin
            && ly.abs() <= self.w / 2.0 + margin
            && p[2] >= self.z - margin
            && p[2] <= self.z + self.h + margin
    }
}

/// The ground: a plane `z = -1.73 + sx x + sy y` under the road; beyond the curbs
/// (|v| > road_half in street coordinates) it is `curb` higher (sidewalks).
#[derive(Clone, Debug)]
pub struct Ground {
    pub sx: f32,
    pub sy: f32,
    /// Street direction in the lidar frame: (cos, sin) of its yaw.
    pub dc: f32,
    pub ds: f32,
    /// Lateral street coordinate of the sensor.
    pub v_ego: f32,
    pub road_half: f32,
    pub curb: f32,
    pub refl_road: f32,
    pub refl_walk: f32,
    pub lane_w: f32,
    pub lanes_per_side: u32,
    /// Width of the parking strip (0 when none) next to each curb.
    pub parking: f32,
}

impl Ground {
    /// Street coordinates (u, v) of a lidar point.
    pub fn to_street(&self, x: f32, y: f32) -> (f32, f32) {
        (self.dc * x + self.ds * y, -self.ds * x + self.dc * y + self.v_ego)
    }

    pub fn to_lidar(&self, u: f32, v: f32) -> (f32, f32) {
        let dv = v - self.v_ego;
        (self.dc * u - self.ds * dv, self.ds * u + self.dc * dv)
    }

    /// Ground height at a lidar (x, y), curb included.
    pub fn height(&self, x: f32, y: f32) -> f32 {
        let (_, v) = self.to_street(x, y);
        let base = -SENSOR_HEIGHT + self.sx * x + self.sy * y;
        if v.abs() > self.road_half {
            base + self.curb
        } else {
            base
        }
    }

    /// Reflectivity of the road surface at street (u, v): asphalt or a painted line.
    pub fn road_refl(&self, u: f32, v: f32) -> f32 {
        let paint = 0.55;
        let lane_w = self.lane_w;
        let av = v.abs();
        // Edge lines (solid) beside the parking strip or the curb.
        let edge = self.road_half - self.parking - 0.25;
        if (av - edge).abs() < 0.07 {
            return paint;
        }
        // Centre line: dashed 3 m on, 6 m off.
        if av < 0.07 && u.rem_euclid(9.0) < 3.0 {
            return paint;
        }
        for i in 1..self.lanes_per_side {
            if (av - lane_w * i as f32).abs() < 0.07 && u.rem_euclid(12.0) < 4.0 {
                return paint;
            }
        }
        self.refl_road
    }
}

/// A scene: ground, boxes, and the labelled actors the boxes belong to.
#[derive(Clone, Debug)]
pub struct Scene {
    pub ground: Ground,
    pub prims: Vec<Prim>,
    pub actors: Vec<Actor>,
}

/// Object densities and scene mix; the defaults are tuned for KITTI-like statistics with enough
/// pedestrians and cyclists (see docs/data.md).
#[derive(Clone, Debug)]
pub struct SceneParams {
    /// Mean number of pedestrian groups per frame.
    pub ped_groups: f32,
    /// Mean number of cyclists per frame.
    pub cyclists: f32,
    /// Probability that a frame has people sitting on the sidewalk.
    pub sitting: f32,
    /// Mean number of moving vehicles per frame.
    pub moving: f32,
}

impl Default for SceneParams {
    fn default() -> Self {
        SceneParams { ped_groups: 1.6, cyclists: 2.2, sitting: 0.3, moving: 5.0 }
    }
}

/// Poisson sample with mean `mean` (Knuth; small means only).
fn poisson(rng: &mut Rng, mean: f32) -> usize {
    let l = (-mean).exp();
    let mut k = 0;
    let mut p = 1.0;
    loop {
        p *= rng.f32();
        if p <= l || k > 50 {
            return k;
        }
        k += 1;
    }
}

/// Scene generation state: the scene so far plus footprints used to avoid overlaps.
pub struct Builder<'a> {
    pub scene: Scene,
    pub(super) rng: &'a mut Rng,
    /// Occupied discs (x, y, radius) of actors and street furniture.
    taken: Vec<(f32, f32, f32)>,
}

impl<'a> Builder<'a> {
    pub fn new(ground: Ground, rng: &'a mut Rng) -> Self {
        Builder { scene: Scene { ground, prims: Vec::new(), actors: Vec::new() }, rng, taken: Vec::new() }
    }

    pub fn finish(self) -> Scene {
        self.scene
    }

    /// A box in street coordinates: centre (u, v), yaw relative to the street, size l x w, from
    /// z0 to z1 above the local ground.
    #[allow(clippy::too_many_arguments)]
    pub fn street_box(&mut self, u: f32, v: f32, yaw: f32, l: f32, w: f32, z0: f32, z1: f32, refl: f32, mat: Mat) {
        let g = &self.scene.ground;
        let (x, y) = g.to_lidar(u, v);
        let gz = g.height(x, y);
        let yl = yaw + g.ds.atan2(g.dc);
        let (s, c) = yl.sin_cos();
        // Nothing may reach into the ego car and the space around the sensor.
        let (lx, ly) = (-(c * x + s * y), s * x - c * y);
        let gap = ((lx.abs() - l / 2.0).max(0.0)).hypot((ly.abs() - w / 2.0).max(0.0));
        if gap < 2.5 && gz + z0 < 0.5 {
            return;
        }
        self.scene.prims.push(Prim {
            cx: x,
            cy: y,
            hx: l / 2.0,
            hy: w / 2.0,
            c,
            s,
            z0: gz + z0,
            z1: gz + z1,
            refl,
            mat,
            actor: NO_ACTOR,
        });
    }

    /// Whether a disc at street (u, v) of radius r is free (and away from the ego car).
    pub(super) fn free(&self, u: f32, v: f32, r: f32) -> bool {
        let g = &self.scene.ground;
        if u.abs() < 3.5 + r && (v - g.v_ego).abs() < 1.6 + r {
            return false;
        }
        let (x, y) = g.to_lidar(u, v);
        self.taken.iter().all(|&(tx, ty, tr)| (tx - x).powi(2) + (ty - y).powi(2) > (tr + r).powi(2))
    }

    pub(super) fn take(&mut self, u: f32, v: f32, r: f32) {
        let (x, y) = self.scene.ground.to_lidar(u, v);
        self.taken.push((x, y, r));
    }

    /// Adds an actor at street (u, v) with street-relative yaw if the spot is free; returns its
    /// index and the actor-to-lidar placement.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn actor(&mut self, class: Class, u: f32, v: f32, yaw: f32, l: f32, w: f32, h: f32) -> Option<u32> {
        let r = 0.5 * (l * l + w * w).sqrt();
        if !self.free(u, v, r) {
            return None;
        }
        self.take(u, v, r);
        let g = &self.scene.ground;
        let (x, y) = g.to_lidar(u, v);
        let z = g.height(x, y);
        let yl = wrap_angle(yaw + g.ds.atan2(g.dc));
        self.scene.actors.push(Actor { class, x, y, z, l, w, h, yaw: yl });
        Some(self.scene.actors.len() as u32 - 1)
    }

    /// A part of actor `a`: box centred at (lx, ly) in the actor's frame, size l x w, from z0 to
    /// z1 above the actor's bottom.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn part(&mut self, a: u32, lx: f32, ly: f32, l: f32, w: f32, z0: f32, z1: f32, refl: f32, mat: Mat) {
        let act = &self.scene.actors[a as usize];
        let (s, c) = act.yaw.sin_cos();
        self.scene.prims.push(Prim {
            cx: act.x + c * lx - s * ly,
            cy: act.y + s * lx + c * ly,
            hx: l / 2.0,
            hy: w / 2.0,
            c,
            s,
            z0: act.z + z0,
            z1: act.z + z1,
            refl,
            mat,
            actor: a,
        });
    }
}

/// Wraps an angle to [-pi, pi).
pub fn wrap_angle(a: f32) -> f32 {
    let t = 2.0 * PI;
    let w = a - t * ((a + PI) / t).floor();
    if w >= PI {
        w - t
    } else {
        w
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    City,
    Residential,
    Road,
}

/// Generates the scene of one frame.
pub fn generate(rng: &mut Rng, p: &SceneParams) -> Scene {
    let kind = [Kind::City, Kind::Residential, Kind::Road][rng.pick(&[0.35, 0.45, 0.2])];
    let lanes_per_side = if kind == Kind::City && rng.chance(0.4) { 2 } else { 1 };
    let lane_w = rng.range(3.0, 3.6);
    let parking = if kind != Kind::Road && rng.chance(0.7) { rng.range(2.0, 2.5) } else { 0.0 };
    let road_half = lanes_per_side as f32 * lane_w + parking + rng.range(0.0, 0.5);
    let ego_lane = if lanes_per_side == 2 && rng.chance(0.5) { 1.5 } else { 0.5 };
    let v_ego = -ego_lane * lane_w + rng.range(-0.4, 0.4);
    let yaw = rng.range(-0.12, 0.12);
    let ground = Ground {
        sx: rng.range(-0.035, 0.025),
        sy: rng.range(-0.01, 0.01),
        dc: yaw.cos(),
        ds: yaw.sin(),
        v_ego,
        road_half,
        curb: rng.range(0.1, 0.18),
        refl_road: rng.range(0.2, 0.3),
        refl_walk: rng.range(0.24, 0.36),
        lane_w,
        lanes_per_side,
        parking,
    };
    let mut b = Builder::new(ground, rng);
    let sidewalk = match kind {
        Kind::City => b.rng.range(2.5, 5.0),
        Kind::Residential => b.rng.range(1.8, 3.5),
        Kind::Road => b.rng.range(1.0, 2.5),
    };

    // Street furniture first (so actors avoid it): trees and poles along the curbs.
    for side in [-1.0f32, 1.0] {
        let v_curb = side * (road_half + 0.6);
        let mut u = -85.0 + b.rng.range(0.0, 10.0);
        let tree_gap = match kind {
            Kind::City => 14.0,
            Kind::Residential => 9.0,
            Kind::Road => 12.0,
        };
        while u < 85.0 {
            if b.rng.chance(0.7) {
                let dv = b.rng.range(0.0, 0.6);
                b.tree(u, v_curb + side * dv);
            }
            if b.rng.chance(0.35) {
                b.pole(u + tree_gap / 2.0, side * (road_half + 0.35), side);
            }
            u += tree_gap * b.rng.range(0.7, 1.4);
        }
    }

    // Buildings, walls, yards and vegetation beyond the sidewalks.
    for side in [-1.0f32, 1.0] {
        let line = road_half + sidewalk;
        let mut u = -100.0 + b.rng.range(0.0, 8.0);
        while u < 100.0 {
            let r = b.rng.f32();
            let (p_building, setback) = match kind {
                Kind::City => (0.85, b.rng.range(0.0, 1.5)),
                Kind::Residential => (0.6, b.rng.range(2.0, 8.0)),
                Kind::Road => (0.2, b.rng.range(4.0, 20.0)),
            };
            if r < p_building {
                let len = b.rng.range(8.0, 30.0);
                let depth = b.rng.range(8.0, 18.0);
                let h = match kind {
                    Kind::City => b.rng.range(8.0, 22.0),
                    _ => b.rng.range(4.0, 9.0),
                };
                let refl = b.rng.range(0.18, 0.42);
                let v = side * (line + setback + depth / 2.0);
                b.street_box(u + len / 2.0, v, 0.0, len, depth, -0.2, h, refl, Mat::Diffuse);
                // Ground-floor windows: glass strips on the facade.
                if kind == Kind::City && b.rng.chance(0.5) {
                    let vf = side * (line + setback - 0.02);
                    b.street_box(u + len / 2.0, vf, 0.0, len * 0.8, 0.04, 0.5, 2.8, 0.08, Mat::Glass);
                }
                if kind != Kind::City && setback > 3.0 {
                    // Front yard: bushes or a hedge.
                    let mut uu = u + 1.0;
                    while uu < u + len {
                        let (dv, size) = (b.rng.range(0.5, setback - 0.5), b.rng.range(0.6, 1.4));
                        b.bush(uu, side * (line + dv), size);
                        uu += b.rng.range(2.0, 7.0);
                    }
                }
                u += len + b.rng.range(0.0, if kind == Kind::City { 2.0 } else { 8.0 });
            } else {
                // A gap: wall / fence, vegetation, or open.
                let len = b.rng.range(5.0, 20.0);
                let g = b.rng.f32();
                if g < 0.35 {
                    let h = b.rng.range(0.8, 2.2);
                    let refl = b.rng.range(0.15, 0.4);
                    b.street_box(
                        u + len / 2.0,
                        side * (line + setback.min(3.0)),
                        0.0,
                        len,
                        0.3,
                        -0.1,
                        h,
                        refl,
                        Mat::Diffuse,
                    );
                } else if g < 0.85 {
                    let mut uu = u;
                    while uu < u + len {
                        if b.rng.chance(0.5) {
                            let dv = b.rng.range(1.0, setback + 6.0);
                            b.tree(uu, side * (line + dv));
                        } else {
                            let (dv, size) = (b.rng.range(0.5, setback + 4.0), b.rng.range(0.8, 2.0));
                            b.bush(uu, side * (line + dv), size);
                        }
                        uu += b.rng.range(1.5, 4.0);
                    }
                }
                u += len;
            }
        }
    }

    // Parked cars along the curbs (in the parking strip).
    if parking > 0.0 {
        for side in [-1.0f32, 1.0] {
            let v = side * (road_half - parking / 2.0 - 0.05);
            let mut u = -70.0 + b.rng.range(0.0, 5.0);
            let fill = b.rng.range(0.35, 0.8);
            while u < 70.0 {
                let len = 5.5;
                if b.rng.chance(fill) {
                    let class = if b.rng.chance(0.12) { Class::Van } else { Class::Car };
                    let flip = if b.rng.chance(0.85) { 0.0 } else { PI };
                    let yaw = if side < 0.0 { 0.0 } else { PI } + flip + 0.05 * b.rng.normal();
                    let dv = 0.15 * b.rng.normal();
                    b.car(class, u, v + dv, yaw);
                }
                u += len + b.rng.range(0.3, 3.0);
            }
        }
    }

    // Moving traffic in the lanes.
    let n_moving = poisson(b.rng, p.moving * if kind == Kind::City { 1.2 } else { 0.9 });
    for _ in 0..n_moving {
        let side = if b.rng.chance(0.55) { -1.0f32 } else { 1.0 };
        let lane = b.rng.below(lanes_per_side as usize) as f32 + 0.5;
        let v = side * lane * lane_w + 0.25 * b.rng.normal();
        let u = b.rng.range(-50.0, 70.0);
        let yaw = if side < 0.0 { 0.0 } else { PI } + 0.03 * b.rng.normal();
        match b.rng.pick(&[0.8, 0.12, 0.08]) {
            0 => b.car(Class::Car, u, v, yaw),
            1 => b.car(Class::Van, u, v, yaw),
            _ => b.truck(u, v, yaw),
        };
    }
    if parking == 0.0 && kind != Kind::City && b.rng.chance(0.3) {
        // A truck parked on the verge.
        let side = if b.rng.chance(0.5) { -1.0f32 } else { 1.0 };
        let u = b.rng.range(-30.0, 60.0);
        b.truck(u, side * (road_half + 1.8), if side < 0.0 { 0.0 } else { PI });
    }

    // Pedestrians in groups on the sidewalks, a few crossing.
    let n_groups = poisson(b.rng, p.ped_groups);
    for _ in 0..n_groups {
        let side = if b.rng.chance(0.5) { -1.0f32 } else { 1.0 };
        let u0 = front_biased(b.rng, -25.0, 50.0);
        let crossing = b.rng.chance(0.12);
        let size = 1 + b.rng.pick(&[0.45, 0.3, 0.15, 0.1]);
        let heading = if b.rng.chance(0.5) { 0.0 } else { PI };
        for k in 0..size {
            let (u, v, yaw) = if crossing {
                (
                    u0 + b.rng.range(-1.5, 1.5),
                    side * b.rng.range(0.0, road_half - 1.0) + k as f32 * 0.8,
                    side * PI / 2.0,
                )
            } else {
                let v = side * (road_half + b.rng.range(0.5, (sidewalk - 0.3).max(0.6)));
                (u0 + k as f32 * b.rng.range(0.7, 1.5), v, heading + 0.4 * b.rng.normal())
            };
            for _ in 0..4 {
                let (du, dv) = (0.3 * b.rng.normal(), 0.3 * b.rng.normal());
                if b.pedestrian(u + du, v + dv, yaw) {
                    break;
                }
            }
        }
    }

    // People sitting near the buildings (cafés, benches).
    if b.rng.chance(p.sitting) {
        let side = if b.rng.chance(0.5) { -1.0f32 } else { 1.0 };
        let u0 = front_biased(b.rng, 0.0, 40.0);
        let n = 1 + b.rng.below(3);
        for k in 0..n {
            let v = side * (road_half + sidewalk - 0.7);
            let yaw = -side * PI / 2.0 + 0.3 * b.rng.normal();
            b.sitting(u0 + k as f32 * 1.1, v, yaw);
        }
    }

    // Cyclists along the road edge (beside parked cars), some on the sidewalk.
    let n_cyc = poisson(b.rng, p.cyclists);
    for _ in 0..n_cyc {
        let side = if b.rng.chance(0.6) { -1.0f32 } else { 1.0 };
        let u = front_biased(b.rng, -20.0, 50.0);
        let v = if b.rng.chance(0.15) {
            side * (road_half + sidewalk / 2.0)
        } else {
            side * (road_half - parking - b.rng.range(0.5, 1.2))
        };
        let yaw = if side < 0.0 { 0.0 } else { PI } + 0.1 * b.rng.normal();
        for _ in 0..4 {
            let du = b.rng.range(-2.0, 2.0);
            if b.cyclist(u + du, v, yaw) {
                break;
            }
        }
    }

    // Clutter on the sidewalks: bins, boxes, bollards.
    let n_clutter = 6 + b.rng.below(10);
    for _ in 0..n_clutter {
        let side = if b.rng.chance(0.5) { -1.0f32 } else { 1.0 };
        let u = b.rng.range(-70.0, 70.0);
        let v = side * (road_half + b.rng.range(0.3, sidewalk));
        if b.free(u, v, 0.5) {
            b.take(u, v, 0.5);
            let s = b.rng.range(0.3, 0.9);
            let h = b.rng.range(0.5, 1.3);
            let refl = b.rng.range(0.1, 0.5);
            let yaw = b.rng.range(0.0, 1.6);
            b.street_box(u, v, yaw, s, s, 0.0, h, refl, Mat::Diffuse);
        }
    }
    b.finish()
}

/// Street position in [a, b) with more mass ahead of the car (where the camera looks).
fn front_biased(rng: &mut Rng, a: f32, b: f32) -> f32 {
    if rng.chance(0.75) {
        rng.range(4.0f32.max(a), b)
    } else {
        rng.range(a, b)
    }
}
