"""The trusted Prolog driver loaded once per process; kept as a Python string so it ships with
the package without package-data configuration.

Why the driver reads rules files itself instead of consulting them: in SWI-Prolog 9.0.4 a
directive executed while loading a file (``:- repeat, fail.``) cannot be interrupted by
``call_with_time_limit/2`` or even SIGTERM, and ``:- initialization(halt).`` ends the
process. So rules files are read term by term: clauses are asserted into a template module,
the only directives accepted are ``dynamic/1`` and ``discontiguous/1``, syntax errors raise
(no message hook needed), and the entry point ``decide/5`` must pass ``safe_goal/1`` of
library(sandbox), which checks every reachable clause. Each job then copies the template's
clauses into a fresh ``in_temporary_module/3`` module with that job's facts, so nothing a
job asserts survives it.
"""

DRIVER_MODULE = "nesydet_driver"

DRIVER = r"""
:- module(nesydet_driver, [nd_load/4, nd_run/4, nd_drop/1, nd_uses/2]).
:- use_module(library(sandbox)).
:- use_module(library(time)).
:- use_module(library(lists)).
:- use_module(library(apply)).
:- use_module(library(aggregate)).
:- use_module(library(solution_sequences)).
:- use_module(library(http/json)).

fact_pred(det/5).
fact_pred(near/3).
fact_pred(overlap/3).
fact_pred(image_size/2).
fact_pred(threshold/1).
fact_pred(scene/2).
fact_pred(on/3).
fact_pred(shore_distance/2).
fact_pred(nearest/3).
fact_pred(cluster/2).
fact_pred(aligned/2).
fact_pred(elongation/2).

%!  nd_uses(+Template, -Names) is det.
%   Names: the names of the fact predicates (joined by commas) that some clause of the
%   template mentions, so nesydet computes and asserts only those. The sandbox refuses
%   calls of goals it cannot see, so a fact a clause never names is never read.
nd_uses(T, Names) :-
    findall(N, ( fact_pred(N/A), mentioned(T, N, A) ), L),
    atomic_list_concat(L, ',', Names).

mentioned(T, N, A) :-
    once(( current_predicate(T:P/K), \+ fact_pred(P/K), functor(H, P, K),
           \+ predicate_property(T:H, imported_from(_)),
           clause(T:H, B), sub_term(S, B), nonvar(S), functor(S, N, A) )).

%!  nd_load(+Template, +File, +Limit, -Json) is det.
%   Read File into module Template; Json is {"ok":true} or {"error":Msg}.
nd_load(T, File, Limit, Json) :-
    catch(call_with_time_limit(Limit, load_rules(T, File)), E, true),
    (   var(E) -> Dict = _{ok: true}
    ;   message_text(E, Msg), Dict = _{error: Msg}
    ),
    with_output_to(string(Json), json_write_dict(current_output, Dict, [width(0)])).

load_rules(T, File) :-
    declare_facts(T),
    setup_call_cleanup(
        open(File, read, S, [encoding(utf8)]),
        read_clauses(S, T),
        close(S)),
    (   current_predicate(T:decide/5) -> true
    ;   throw(rules_error('the rules file does not define decide/5'))
    ),
    safe_goal(T:decide(_, _, _, _, _)).

declare_facts(T) :-
    forall(fact_pred(N/A), dynamic(T:N/A)).

read_clauses(S, T) :-
    read_term(S, Term, [module(T), syntax_errors(error)]),
    (   Term == end_of_file -> true
    ;   add_term(Term, T),
        read_clauses(S, T)
    ).

add_term(Term, _) :-
    var(Term), !,
    throw(rules_error('a clause is a plain variable')).
add_term((:- D), T) :- !, directive(D, T).
add_term((?- D), T) :- !, directive(D, T).
add_term(Term, T) :-
    expand_term(Term, X),
    (   is_list(X) -> maplist(add_clause(T), X) ; add_clause(T, X) ).

add_clause(T, Clause) :-
    (   Clause = (H :- _) -> true ; H = Clause ),
    (   var(H) -> throw(rules_error('a clause head is a variable')) ; true ),
    (   H = _:_ -> throw(rules_error(format('module-qualified clause head ~q', [H]))) ; true ),
    (   callable(H) -> true ; throw(rules_error(format('clause head ~q is not callable', [H]))) ),
    functor(H, N, A),
    (   fact_pred(N/A)
    ->  throw(rules_error(format('~w/~w holds facts asserted by nesydet; rules may not define it',
                                 [N, A])))
    ;   true
    ),
    assertz(T:Clause).

directive(D, _) :- var(D), !, throw(rules_error('a directive is a plain variable')).
directive(dynamic(Spec), T) :- !, pred_specs(Spec, L), forall(member(P, L), dynamic(T:P)).
directive(discontiguous(_), _) :- !.
directive(D, _) :-
    throw(rules_error(format('directive not allowed in rules files: ~q (~w)',
                             [D, 'only dynamic/1 and discontiguous/1']))).

pred_specs(V, _) :- var(V), !, throw(rules_error('dynamic/1 needs Name/Arity')).
pred_specs((A, B), L) :- !, pred_specs(A, LA), pred_specs(B, LB), append(LA, LB, L).
pred_specs([], []) :- !.
pred_specs([H|T], L) :- !, pred_specs(H, LH), pred_specs(T, LT), append(LH, LT, L).
pred_specs(N/A, [N/A]) :- atom(N), integer(A), A >= 0, \+ fact_pred(N/A), !.
pred_specs(S, _) :- throw(rules_error(format('bad dynamic/1 spec ~q', [S]))).

%!  nd_drop(+Template) is det.
%   Remove every predicate of a template module (cache eviction / failed load).
nd_drop(T) :-
    forall(( current_predicate(T:N/A), functor(H, N, A),
             \+ predicate_property(T:H, imported_from(_)) ),
           catch(abolish(T:N/A), _, true)).

%!  nd_run(+Template, +Facts, +Limit, -Out) is det.
%   Decide every det/5 of Facts with the rules of Template. Out is text: either
%   "error" TAB message, or one line per detection: Id TAB Action TAB Conf TAB Class TAB
%   the names of the rules that fired, joined by the unit separator (0x1F), which no rule
%   name holds. (Tab-separated lines are ~5x cheaper than JSON here.)
nd_run(T, Facts, Limit, Out) :-
    catch(call_with_time_limit(Limit,
              in_temporary_module(M, setup_job(T, M, Facts), solve(M, Out0))),
          E, true),
    (   var(E) -> Out = Out0
    ;   message_text(E, Msg), string_concat("error\t", Msg, Out)
    ).

setup_job(T, M, Facts) :-
    declare_facts(M),
    forall(( current_predicate(T:N/A), \+ fact_pred(N/A), functor(H, N, A),
             \+ predicate_property(T:H, imported_from(_)) ),
           ( dynamic(M:N/A),
             forall(clause(T:H, B), assertz(M:(H :- B))) )),
    maplist(assert_fact(M), Facts),
    derive_aggregates(T, M).

%   A hand-built fact list (tests, callers of PrologReasoner.decide) may hold near/3 and
%   overlap/3 but not their aggregates; derive nearest/3 and cluster/2 then, as
%   nesydet.pipeline.reasoning.scene_facts computes them, when the rules read them.
derive_aggregates(T, M) :-
    (   \+ M:nearest(_, _, _), \+ M:cluster(_, _), once(M:near(_, _, _)),
        ( mentioned(T, nearest, 3) ; mentioned(T, cluster, 2) )
    ->  forall(distinct(I-K, separate_near(M, I, K, _)),
               ( aggregate_all(min(D), separate_near(M, I, K, D), Min),
                 assertz(M:nearest(I, K, Min)) )),
        forall(M:det(I, C, _, _, _),
               ( aggregate_all(count, separate_near(M, I, C, _), N),
                 ( N > 0 -> assertz(M:cluster(I, N)) ; true ) ))
    ;   true
    ).

separate_near(M, I, K, D) :-
    M:near(I, O, D), D =< 3.0, M:det(O, K, _, _, _),
    \+ ( M:overlap(I, O, S), S > 0.3 ).

assert_fact(M, F) :- assertz(M:F).

solve(M, Out) :-
    findall(Line, ( M:det(Id, _, _, _, _), decide_one(M, Id, Line) ), Lines),
    atomic_list_concat(Lines, '\n', Out).

decide_one(M, Id, Line) :-
    (   M:decide(Id, A, C, K, Rs0) -> true
    ;   throw(rules_error(format('decide/5 failed for detection ~w', [Id])))
    ),
    (   memberchk(A, [keep, drop, relabel]), number(C), atom(K), is_list(Rs0) -> true
    ;   throw(rules_error(format('decide/5 returned a malformed decision for detection ~w: ~q',
                                 [Id, decide(Id, A, C, K, Rs0)])))
    ),
    maplist(rule_name, Rs0, Rs),
    atomic_list_concat(Rs, '\x1f\', RuleText),  % a separator no rule name holds
    % atomic_list_concat/3 rather than format/2 or write/1: a third of their time.
    atomic_list_concat([Id, A, C, K, RuleText], '\t', Line).

rule_name(R, S) :- ( atomic(R) -> S = R ; term_string(R, S) ).

message_text(rules_error(format(F, A)), S) :- !, format(string(S), F, A).
message_text(rules_error(Msg), S) :- !, format(string(S), '~w', [Msg]).
message_text(time_limit_exceeded, "time limit exceeded") :- !.
message_text(E, S) :-
    (   catch(message_to_codes(E, Codes), _, fail) -> string_codes(S, Codes)
    ;   format(string(S), '~q', [E])
    ).

message_to_codes(E, Codes) :-
    '$messages':translate_message(E, Lines, []),
    with_output_to(codes(Codes), print_message_lines(current_output, '', Lines)).
"""
