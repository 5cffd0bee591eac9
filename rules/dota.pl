/*  dota.pl -- default nesydet rules for DOTA-style aerial detections.

    How nesydet runs this file
    --------------------------
    The file is read clause by clause into a sandbox (library(sandbox) checks everything
    reachable from decide/5); the only directives allowed are dynamic/1 and
    discontiguous/1. For every image nesydet asserts these facts, then calls decide/5 once
    per detection, under a time limit:

      det(Id, Class, Conf, AreaFrac, RelSize)
          Class    class name atom, e.g. small_vehicle
          Conf     detector confidence in [0, 1]
          AreaFrac box area / image area
          RelSize  box area / median area of the same class in this image
      near(Id, Other, Dist)     centres within Dist mean box diagonals (Dist =< 3.0)
      overlap(Id, Other, IoS)   intersection over the smaller box area (rotated boxes exact)
      elongation(Id, E)         the box's long side over its short side (1.0 a square), at
                                most 100; oriented boxes only
      image_size(W, H)          pixels
      threshold(T)              the job's confidence threshold

    near/3 and overlap/3 hold in both directions. Candidates somewhat below the threshold
    may be included (Pipeline candidate_factor), so supporting context can lift them.

    Scene context, from the image alone (a surface map made by a small model over colour and
    texture, models/nesydet-context.npz; never from ground truth or the detections).
    Surface is one of land (soil, crops, grass, sports grounds), water, road (streets,
    roundabouts, car parks), runway (airfield aprons and runways), paved (other hard
    standing: tank farms, yards, quays) or roof (buildings):

      scene(Surface, Share)     share of the image covered by Surface (every surface)
      on(Id, Surface, Share)    share of Surface around the detection: the envelope of its box
                                grown to twice its length and width about its centre, less
                                the box's own envelope (Share >= 0.05 only)
      shore_distance(Id, D)     distance from the box centre to the nearest shoreline, in the
                                box's own diagonals; only in images with water and land

    Neighbourhood aggregates of near/3 and overlap/3, computed before Prolog runs (a dense
    car park has tens of thousands of near pairs but only a few of these per detection):

      nearest(Id, Class, Dist)  the closest separate detection of Class within 3.0 mean
                                diagonals (fragments and duplicates, IoS > 0.3, excluded)
      cluster(Id, N)            separate detections of Id's own class within 3.0 diagonals
                                (N > 0: no cluster/2 fact means none)
      aligned(Id, N)            of those, how many point the same way (within 10 degrees,
                                modulo a right angle: rows and grids); oriented boxes only,
                                N > 0

    nesydet computes and sends only the facts a rules file mentions, so a file that never
    reads near/3 does not pay for it. These names are a stable contract: new facts may be
    added, none of these will change meaning. When a hand-built fact list holds near/3 but
    no nearest/3 or cluster/2, the driver derives them from near/3, det/5 and overlap/3.

    Entry point
    -----------
      decide(+Id, -Action, -Conf, -Class, -Fired)
          Action keep | drop | relabel, Conf the adjusted confidence in [0, 1],
          Class the final class, Fired the names of the rules that fired.

    A detection is dropped when a hard rule fires (implausible size, an aircraft on water)
    or when its adjusted confidence is below the threshold. Boosts from several rules add up to at most
    max_total_boost/1; each rule counts once per detection however many neighbours
    support it.
*/

% ---------------------------------------------------------------------------------------
% Taxonomy: class_group(Class, Group)  (the 15 DOTA v1.0 classes)
% ---------------------------------------------------------------------------------------

class_group(plane,              aircraft).
class_group(helicopter,         aircraft).
class_group(ship,               vessel).
class_group(small_vehicle,      vehicle).
class_group(large_vehicle,      vehicle).
class_group(storage_tank,       industrial).
class_group(harbor,             waterfront).
class_group(bridge,             infrastructure).
class_group(roundabout,         infrastructure).
class_group(tennis_court,       sports_field).
class_group(basketball_court,   sports_field).
class_group(baseball_diamond,   sports_field).
class_group(soccer_ball_field,  sports_field).
class_group(ground_track_field, sports_field).
class_group(swimming_pool,      leisure).

% is_a(Class, Group): Class belongs to Group, or Group is the class itself.
is_a(C, C).
is_a(C, G) :- class_group(C, G).

% Structures that stand on dry land: a ship overlapping one of them is implausible.
land_structure(C) :- class_group(C, sports_field).
land_structure(C) :- class_group(C, industrial).
land_structure(roundabout).
land_structure(swimming_pool).

% Large "container" classes that other objects legitimately sit on or inside.
container(C) :- class_group(C, sports_field).
container(C) :- class_group(C, infrastructure).
container(harbor).

% ---------------------------------------------------------------------------------------
% Co-occurrence support: supports(Class, NeighbourClass, MaxDist, Boost, Rule)
% A detection of Class with a neighbour of NeighbourClass within MaxDist mean diagonals
% gains Boost (nearest/3 counts separate objects only, never a fragment of the same thing).
% Ships dock at harbours, vehicles travel and park together, aircraft stand
% in rows on aprons, tanks and courts come in clusters.
% ---------------------------------------------------------------------------------------

supports(ship,          harbor,        3.0, 0.10, ship_near_harbor).
supports(harbor,        ship,          3.0, 0.10, harbor_with_ships).
supports(ship,          ship,          3.0, 0.05, ships_in_group).
supports(small_vehicle, large_vehicle, 3.0, 0.05, car_near_truck).
supports(large_vehicle, small_vehicle, 3.0, 0.05, truck_near_car).
supports(small_vehicle, small_vehicle, 2.0, 0.05, cars_in_group).
supports(large_vehicle, large_vehicle, 2.0, 0.05, trucks_in_group).
supports(plane,         plane,         3.0, 0.10, planes_in_group).
supports(helicopter,    helicopter,    3.0, 0.05, helicopters_in_group).
supports(helicopter,    plane,         3.0, 0.05, helicopter_at_airfield).
supports(storage_tank,  storage_tank,  2.5, 0.10, tank_farm).
supports(tennis_court,  tennis_court,  2.0, 0.10, court_complex).
supports(basketball_court, tennis_court, 3.0, 0.05, court_complex).
supports(tennis_court,  basketball_court, 3.0, 0.05, court_complex).
supports(roundabout,    small_vehicle, 1.5, 0.05, roundabout_with_traffic).
supports(bridge,        small_vehicle, 1.0, 0.05, bridge_with_traffic).

max_total_boost(0.15).

% ---------------------------------------------------------------------------------------
% Implausible overlaps: conflict(Class, OtherClass, MinIoS, Penalty, Rule)
% ---------------------------------------------------------------------------------------

conflict(plane, harbor, 0.3, 0.30, plane_on_harbor).
conflict(ship,  Other,  0.3, 0.30, ship_on_land) :- land_structure(Other).
conflict(C, swimming_pool, 0.5, 0.20, vehicle_in_pool) :- class_group(C, vehicle).
conflict(storage_tank, C, 0.5, 0.20, tank_on_vehicle) :- class_group(C, vehicle).

% Two boxes of different, non-nested classes on the same spot: the weaker label loses.
competing_ios(0.6).
competing_penalty(0.15).

% ---------------------------------------------------------------------------------------
% Size plausibility: max_area_fraction(Class, F). A box covering more than F of the image
% is not that class (e.g. a "storage_tank" covering half the image).
% ---------------------------------------------------------------------------------------

max_area_fraction(small_vehicle,      0.02).
max_area_fraction(large_vehicle,      0.04).
max_area_fraction(helicopter,         0.10).
max_area_fraction(swimming_pool,      0.10).
max_area_fraction(storage_tank,       0.10).
max_area_fraction(ship,               0.25).
max_area_fraction(plane,              0.25).
max_area_fraction(tennis_court,       0.30).
max_area_fraction(basketball_court,   0.30).
max_area_fraction(roundabout,         0.40).
max_area_fraction(baseball_diamond,   0.60).
max_area_fraction(soccer_ball_field,  0.60).
max_area_fraction(ground_track_field, 0.70).
max_area_fraction(harbor,             0.70).
max_area_fraction(bridge,             0.70).

% ---------------------------------------------------------------------------------------
% Isolation: classes that almost always come in groups lose a little confidence when a
% weak detection has no member of its group nearby.
% ---------------------------------------------------------------------------------------

gregarious(small_vehicle, 4.0).
gregarious(storage_tank,  4.0).
gregarious(plane,         4.0).
isolation_penalty(0.05).
isolation_max_conf(0.5).

% ---------------------------------------------------------------------------------------
% Rule effects: effect(Id, Class, Rule, Effect), Effect = boost(B) | penalty(P) | drop
% ---------------------------------------------------------------------------------------

effect(Id, C, Rule, boost(B)) :-
    supports(C, K, MaxD, B, Rule),
    nearest(Id, K, D), D =< MaxD.
effect(Id, C, Rule, penalty(P)) :-
    conflict(C, K, MinIoS, P, Rule),
    once(( overlap(Id, O, IoS), IoS >= MinIoS, det(O, K, _, _, _) )).
effect(Id, C, competing_label, penalty(P)) :-
    competing_ios(MinIoS),
    competing_penalty(P),
    det(Id, C, Conf, A, _),
    \+ container(C),
    once(( overlap(Id, O, IoS), IoS >= MinIoS,
           det(O, K, ConfO, AO, _), K \== C, \+ container(K),
           ConfO > Conf, AO > 0.5 * A, AO < 2.0 * A )).
effect(Id, C, isolated, penalty(P)) :-
    gregarious(C, MaxD),
    det(Id, C, Conf, _, _),
    isolation_max_conf(MaxConf),
    Conf < MaxConf,
    class_group(C, G),
    \+ ( nearest(Id, K, D), D =< MaxD, is_a(K, G) ),
    isolation_penalty(P).
effect(Id, C, implausible_size, drop) :-
    max_area_fraction(C, F),
    det(Id, C, _, A, _),
    A > F.

% relabel(Id, Class, NewClass, Rule): a "small vehicle" far larger than the other small
% vehicles in the image, next to trucks, is a truck.
relabel(Id, small_vehicle, large_vehicle, oversized_car_near_trucks) :-
    det(Id, small_vehicle, _, _, Rel),
    Rel >= 2.5,
    nearest(Id, large_vehicle, D), D =< 3.0.

% ---------------------------------------------------------------------------------------
% Scene context: where each kind of object can stand. These read the surface map (on/3,
% scene/2, shore_distance/2), the neighbourhood aggregates (nearest/3, cluster/2,
% aligned/2) and the boxes' shape (elongation/2); none fires on a fact list without them.
% Tuned on held-out seeds 1 and 2 (plain and look-alikes); bench/quality.py reports on
% seed 4.
% ---------------------------------------------------------------------------------------

% has_context: the surface map was sent (scene/2 lists every surface, even absent ones).
has_context :- once(scene(_, _)).

% share(Id, Surface, Share): Share of Surface around Id, 0.0 when none is listed.
share(Id, S, V) :- ( on(Id, S, V0) -> V = V0 ; V = 0.0 ).

% shares(Id, Surfaces, Sum): the shares of several surfaces added up.
shares(_, [], 0.0).
shares(Id, [S|Ss], V) :- share(Id, S, V1), shares(Id, Ss, V2), V is V1 + V2.

% away_from_shore(Id, Min): more than Min diagonals from any shore, or no shore in the image.
away_from_shore(Id, Min) :- ( shore_distance(Id, D) -> D > Min ; true ).

% vessel_on_water: ships float; one surrounded by water is what it seems.
effect(Id, C, vessel_on_water, boost(0.05)) :-
    class_group(C, vessel), share(Id, water, W), W >= 0.5.
% vessel_on_dry_land: a boat shape with no water around it and far from any shore is a
% roof, a boat on a trailer or a stack of something; a ship at a quay keeps its shore.
effect(Id, C, vessel_on_dry_land, penalty(0.60)) :-
    class_group(C, vessel), has_context,
    share(Id, water, W), W < 0.10,
    away_from_shore(Id, 1.5).
% lone_vessel_offshore: ships lie at harbours or in groups; a weak ship shape alone on
% open water is a wake, a buoy or a plane-shaped mark.
effect(Id, C, lone_vessel_offshore, penalty(0.25)) :-
    class_group(C, vessel),
    det(Id, C, Conf, _, _), Conf < 0.5,
    share(Id, water, W), W >= 0.9,
    \+ ( nearest(Id, K, _), memberchk(K, [ship, harbor]) ).
% stubby_vessel: hulls are long and narrow, three to eight times as long as they are wide
% from above; a "ship" hardly longer than it is wide, away from any harbour, is a
% plane-shaped mark, a pontoon, a buoy or a roof (boats moored side by side at a pier can
% merge into one short box, so a ship at a harbour is left alone).
effect(Id, C, stubby_vessel, penalty(0.45)) :-
    class_group(C, vessel), elongation(Id, E), E < 2.8,
    \+ ( nearest(Id, harbor, D), D =< 1.0 ).
% stubby_harbor: piers reach far out into the water, many times longer than wide; a short
% "harbour" is a boat, a jetty's end or a mark on the water.
effect(Id, harbor, stubby_harbor, penalty(0.30)) :-
    elongation(Id, E), E < 4.0.
% aircraft_on_apron: aircraft stand on runways, aprons and hard standing.
effect(Id, C, aircraft_on_apron, boost(0.05)) :-
    class_group(C, aircraft), shares(Id, [runway, paved], V), V >= 0.3.
% aircraft_on_water: a plane shape on open water is a mark, a wake or a reflection.
effect(Id, C, aircraft_on_water, drop) :-
    class_group(C, aircraft), share(Id, water, W), W >= 0.5.
% vehicle_on_road: vehicles drive on roads and park on asphalt.
effect(Id, C, vehicle_on_road, boost(0.05)) :-
    class_group(C, vehicle), shares(Id, [road, paved], V), V >= 0.3.
% vehicle_on_roof: a car-sized box on a roof, away from any road, is rooftop plant.
effect(Id, C, vehicle_on_roof, penalty(0.30)) :-
    class_group(C, vehicle), share(Id, roof, R), R >= 0.2,
    share(Id, road, V), V < 0.10.
% truck_in_open_field: trucks keep to roads, yards and car parks; a truck-sized shape in
% the middle of a field is a shed, a boat on land or a stack of bales.
effect(Id, large_vehicle, truck_in_open_field, penalty(0.60)) :-
    has_context,
    share(Id, land, L), L >= 0.6,
    shares(Id, [road, paved, runway], V), V < 0.15.
% car_in_open_field: the same for cars, in a field with hardly any asphalt around.
effect(Id, small_vehicle, car_in_open_field, penalty(0.40)) :-
    has_context,
    share(Id, land, L), L >= 0.7,
    shares(Id, [road, paved, runway], V), V < 0.10.
% car_off_road_alone: cars drive on roads or park beside other cars; a car shape with no
% asphalt around it and no vehicle close by is rooftop plant, a shed or a boat on a lawn.
effect(Id, small_vehicle, car_off_road_alone, penalty(0.40)) :-
    has_context,
    share(Id, road, V), V < 0.05,
    share(Id, land, L), L < 0.7,  % in an open field car_in_open_field already speaks
    \+ ( nearest(Id, K, D), D =< 1.5, class_group(K, vehicle) ).
% lone_tank_in_field: storage tanks stand in farms of three or more on hard standing; one
% or two roundels in a field are silo tops, water troughs or crop circles.
effect(Id, storage_tank, lone_tank_in_field, penalty(0.80)) :-
    has_context,
    \+ ( cluster(Id, N), N > 1 ),
    share(Id, land, L), L >= 0.6.
% vehicles_in_rows: parked vehicles line up with their neighbours.
effect(Id, C, vehicles_in_rows, boost(0.05)) :-
    class_group(C, vehicle), aligned(Id, N), N >= 2.
% harbor_on_shore: harbours are built at the water's edge.
effect(Id, harbor, harbor_on_shore, boost(0.05)) :-
    shore_distance(Id, D), D =< 1.0.
% harbor_off_shore: a "harbour" with no water around it is a yard or a car park.
effect(Id, harbor, harbor_off_shore, penalty(0.30)) :-
    has_context, share(Id, water, W), W < 0.05.
% bridge_over_water: bridges span water (or roads, which the next rule leaves alone).
effect(Id, bridge, bridge_over_water, boost(0.05)) :-
    share(Id, water, W), W >= 0.05.

% ---------------------------------------------------------------------------------------
% decide(+Id, -Action, -Conf, -Class, -Fired)
% ---------------------------------------------------------------------------------------

decide(Id, Action, Conf, Class, Fired) :-
    det(Id, C0, Conf0, _, _),
    findall(R-E, effect(Id, C0, R, E), Effects),
    tally(Effects, [], Fired0, 0, Boost, 0, Penalty, keep, Hard),
    max_total_boost(Max),
    Conf is max(0.0, min(1.0, Conf0 + min(Boost, Max) - Penalty)),
    (   Hard == drop
    ->  Action = drop, Class = C0, Fired = Fired0
    ;   threshold(T), Conf < T
    ->  Action = drop, Class = C0, Fired = Fired0
    ;   relabel(Id, C0, C1, RR)
    ->  Action = relabel, Class = C1, append(Fired0, [RR], Fired)
    ;   Action = keep, Class = C0, Fired = Fired0
    ).

% tally(+Effects, +Seen, -Fired, +B0, -B, +P0, -P, +H0, -H): one pass over the effects,
% counting only the first of each rule name, so a rule listed with several neighbour
% classes still counts once. Fired: the rule names in the order they fired; B: the sum of
% the boosts (from B0); P: the sum of the penalties (from P0); H: drop when a hard rule
% fired (else H0).
tally([], _, [], B, B, P, P, H, H).
tally([R-E|T], Seen, Fired, B0, B, P0, P, H0, H) :-
    (   memberchk(R, Seen)
    ->  tally(T, Seen, Fired, B0, B, P0, P, H0, H)
    ;   Fired = [R|Fired1],
        add_effect(E, B0, B1, P0, P1, H0, H1),
        tally(T, [R|Seen], Fired1, B1, B, P1, P, H1, H)
    ).

add_effect(boost(X), B0, B, P, P, H, H) :- !, B is B0 + X.
add_effect(penalty(X), B, B, P0, P, H, H) :- !, P is P0 + X.
add_effect(drop, B, B, P, P, _, drop) :- !.
add_effect(_, B, B, P, P, H, H).
