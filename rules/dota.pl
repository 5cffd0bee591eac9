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
      image_size(W, H)          pixels
      threshold(T)              the job's confidence threshold

    near/3 and overlap/3 hold in both directions. Candidates somewhat below the threshold
    may be included (Pipeline candidate_factor), so supporting context can lift them.

    Entry point
    -----------
      decide(+Id, -Action, -Conf, -Class, -Fired)
          Action keep | drop | relabel, Conf the adjusted confidence in [0, 1],
          Class the final class, Fired the names of the rules that fired.

    A detection is dropped when a hard rule fires (implausible size) or when its adjusted
    confidence is below the threshold. Boosts from several rules add up to at most
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
% gains Boost. Ships dock at harbours, vehicles travel and park together, aircraft stand
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
    once(( near(Id, O, D), D =< MaxD, det(O, K, _, _, _), distinct(Id, O) )).
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
    \+ ( near(Id, O, D), D =< MaxD, det(O, K, _, _, _), is_a(K, G) ),
    isolation_penalty(P).
effect(Id, C, implausible_size, drop) :-
    max_area_fraction(C, F),
    det(Id, C, _, A, _),
    A > F.

% distinct(Id, Other): Other is a separate object, not a fragment or duplicate box of the
% same thing. Only separate neighbours count as co-occurrence evidence.
distinct(Id, O) :-
    \+ ( overlap(Id, O, IoS), IoS > 0.3 ).

% relabel(Id, Class, NewClass, Rule): a "small vehicle" far larger than the other small
% vehicles in the image, next to trucks, is a truck.
relabel(Id, small_vehicle, large_vehicle, oversized_car_near_trucks) :-
    det(Id, small_vehicle, _, _, Rel),
    Rel >= 2.5,
    once(( near(Id, O, D), D =< 3.0, det(O, large_vehicle, _, _, _) )).

% ---------------------------------------------------------------------------------------
% decide(+Id, -Action, -Conf, -Class, -Fired)
% ---------------------------------------------------------------------------------------

decide(Id, Action, Conf, Class, Fired) :-
    det(Id, C0, Conf0, _, _),
    findall(R-E, effect(Id, C0, R, E), Effects0),
    first_per_rule(Effects0, Effects),
    boost_total(Effects, Boost),
    penalty_total(Effects, Penalty),
    Conf1 is Conf0 + Boost - Penalty,
    clamp(Conf1, Conf),
    pairs_keys(Effects, Fired0),
    (   memberchk(_-drop, Effects)
    ->  Action = drop, Class = C0, Fired = Fired0
    ;   threshold(T), Conf < T
    ->  Action = drop, Class = C0, Fired = Fired0
    ;   relabel(Id, C0, C1, RR)
    ->  Action = relabel, Class = C1, append(Fired0, [RR], Fired)
    ;   Action = keep, Class = C0, Fired = Fired0
    ).

boost_total(Effects, Boost) :-
    findall(B, member(_-boost(B), Effects), Bs),
    sum_list(Bs, B0),
    max_total_boost(Max),
    Boost is min(B0, Max).

penalty_total(Effects, Penalty) :-
    findall(P, member(_-penalty(P), Effects), Ps),
    sum_list(Ps, Penalty).

clamp(X, Y) :- Y is max(0.0, min(1.0, X)).

% first_per_rule(+Effects, -Unique): keep the first effect of each rule name, so a rule
% listed with several neighbour classes still counts once.
first_per_rule([], []).
first_per_rule([R-E|T], [R-E|U]) :-
    exclude(same_rule(R), T, T1),
    first_per_rule(T1, U).

same_rule(R, R2-_) :- R == R2.
