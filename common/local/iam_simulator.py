"""``iam:SimulatePrincipalPolicy`` for the stand-in (moto 5.2.5 has no such operation).

The pre-flight asks IAM whether the execution role may read and write the artifacts bucket;
on AWS, ``SimulatePrincipalPolicy`` answers with the role's identity policies (inline and
attached), its permissions boundary and the caller's context keys all evaluated. This module
gives the stand-in the same operation, evaluated by the rules of AWS's "Policy evaluation
logic" and "IAM JSON policy elements" pages, for the parts an identity-based simulation uses:

* a statement applies when its ``Action`` (or ``NotAction``) and ``Resource`` (or
  ``NotResource``) match -- actions case-insensitively, resources case-sensitively, ``*`` and
  ``?`` wildcards -- and every ``Condition`` holds for the request's context keys
  (``ContextEntries``);
* any applicable ``Deny`` gives ``explicitDeny``; else any applicable ``Allow`` gives
  ``allowed``; else ``implicitDeny``; a permissions boundary must allow as well
  (``PermissionsBoundaryDecisionDetail``), and its ``Deny`` is an explicit deny;
* conditions: the ``String``, ``Numeric``, ``Bool``, ``Arn``, ``IpAddress`` and ``Null``
  operators, ``...IfExists``, ``ForAnyValue:`` / ``ForAllValues:``; a key the context lacks
  makes a condition false (true for the negated operators, ``IfExists`` and ``ForAllValues``)
  and is listed in ``MissingContextValues``. Other operators (``Date*``, ``Binary``) are not
  evaluated: a statement that uses one does not apply, and the result says so in
  ``MissingContextValues`` -- never a silent allow.

Resource-based policies (``ResourcePolicy``), SCPs and session policies are not evaluated:
SimulatePrincipalPolicy evaluates them only when given, and the pre-flight does not give them.
moto's own ``iam.access_control`` evaluator is not used: it has no ``NotResource`` and treats an
unmet condition on an ``Allow`` as a deny.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

__all__ = ["EvaluationResult", "PolicyDocument", "evaluate", "install"]

_NEGATED = ("StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "NumericNotEquals",
            "ArnNotEquals", "ArnNotLike", "NotIpAddress")


@dataclass(frozen=True)
class PolicyDocument:
    """One policy document and where it comes from (``SourcePolicyType``: ``role``,
    ``aws-managed``, ``user-managed``, ``none`` for a policy given in the request)."""

    policy_id: str
    source_type: str
    statements: tuple[dict[str, Any], ...]

    @classmethod
    def parse(cls, policy_id: str, source_type: str, document: Any) -> PolicyDocument:
        """Read a policy document (a JSON string, URL-encoded or not, or a dict)."""
        if isinstance(document, str):
            text = document if document.lstrip().startswith("{") else unquote(document)
            document = json.loads(text)
        statements = document.get("Statement", [])
        if isinstance(statements, dict):
            statements = [statements]
        return cls(policy_id, source_type, tuple(statements))


@dataclass
class EvaluationResult:
    """One action on one resource, as SimulatePrincipalPolicy reports it."""

    action: str
    resource: str
    decision: str
    matched: list[dict[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    boundary_allows: bool | None = None

    def as_shape(self) -> dict[str, Any]:
        """The ``EvaluationResult`` structure of botocore's ``iam`` service model."""
        shape: dict[str, Any] = {
            "EvalActionName": self.action, "EvalResourceName": self.resource,
            "EvalDecision": self.decision, "MatchedStatements": self.matched,
            "MissingContextValues": sorted(set(self.missing)),
        }
        if self.boundary_allows is not None:
            shape["PermissionsBoundaryDecisionDetail"] = {
                "AllowedByPermissionsBoundary": self.boundary_allows}
        return shape


# --------------------------------------------------------------------------- matching


def _listed(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _glob(pattern: str, value: str, *, ignore_case: bool) -> bool:
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch)
                    for ch in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL if ignore_case
                        else re.DOTALL) is not None


def _element_matches(statement: dict[str, Any], name: str, value: str, *,
                     ignore_case: bool) -> bool:
    """Whether ``value`` is covered by ``name`` (``Action``/``Resource``) or escapes
    ``Not<name>``; a statement with neither covers nothing."""
    if name in statement:
        return any(_glob(p, value, ignore_case=ignore_case) for p in _listed(statement[name]))
    if f"Not{name}" in statement:
        return not any(_glob(p, value, ignore_case=ignore_case)
                       for p in _listed(statement[f"Not{name}"]))
    return False


def _compare(operator: str, have: str, want: str) -> bool | None:
    """One context value against one condition value; ``None`` for an operator this
    simulator does not evaluate."""
    base = operator.removesuffix("IfExists")
    if base in ("StringEquals", "StringNotEquals"):
        return have == want
    if base in ("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"):
        return have.lower() == want.lower()
    if base in ("StringLike", "StringNotLike"):
        return _glob(want, have, ignore_case=False)
    if base in ("ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike"):
        return _glob(want, have, ignore_case=False)
    if base == "Bool":
        return have.lower() == want.lower()
    if base.startswith("Numeric"):
        try:
            a, b = float(have), float(want)
        except ValueError:
            return False
        return {"NumericEquals": a == b, "NumericNotEquals": a == b,
                "NumericLessThan": a < b, "NumericLessThanEquals": a <= b,
                "NumericGreaterThan": a > b, "NumericGreaterThanEquals": a >= b}.get(base)
    if base in ("IpAddress", "NotIpAddress"):
        try:
            return ipaddress.ip_address(have) in ipaddress.ip_network(want, strict=False)
        except ValueError:
            return False
    return None


def _condition_holds(operator: str, key: str, wanted: list[str],
                     context: dict[str, list[str]], missing: list[str],
                     unsupported: list[str]) -> bool:
    qualifier, _, name = operator.rpartition(":")
    base = name.removesuffix("IfExists")
    have = context.get(key.lower())
    if base == "Null":
        return (have is None) == (wanted[0].lower() == "true") if wanted else False
    if have is None:
        if name.endswith("IfExists") or qualifier == "ForAllValues":
            return True
        missing.append(key)
        return base in _NEGATED
    results = [[_compare(name, value, w) for w in wanted] for value in have]
    if any(r is None for row in results for r in row):
        unsupported.append(f"{operator} on {key} (not evaluated by the local stand-in)")
        return False
    matched = [any(row) for row in results]
    negated = base in _NEGATED
    if qualifier == "ForAllValues":
        return all((not m) if negated else m for m in matched)
    if qualifier == "ForAnyValue":
        return any((not m) if negated else m for m in matched)
    return (not any(matched)) if negated else any(matched)


def _applies(statement: dict[str, Any], action: str, resource: str,
             context: dict[str, list[str]], missing: list[str], unsupported: list[str]) -> bool:
    if not _element_matches(statement, "Action", action, ignore_case=True):
        return False
    if not _element_matches(statement, "Resource", resource, ignore_case=False):
        return False
    for operator, entries in (statement.get("Condition") or {}).items():
        for key, values in (entries or {}).items():
            if not _condition_holds(operator, key, _listed(values), context, missing,
                                    unsupported):
                return False
    return True


def _decide(policies: Iterable[PolicyDocument], action: str, resource: str,
            context: dict[str, list[str]], missing: list[str], unsupported: list[str]
            ) -> tuple[str, list[dict[str, str]]]:
    denied, allowed = [], []
    for policy in policies:
        for statement in policy.statements:
            if not _applies(statement, action, resource, context, missing, unsupported):
                continue
            matched = {"SourcePolicyId": policy.policy_id,
                       "SourcePolicyType": policy.source_type}
            (denied if statement.get("Effect") == "Deny" else allowed).append(matched)
    if denied:
        return "explicitDeny", denied
    if allowed:
        return "allowed", allowed
    return "implicitDeny", []


def evaluate(policies: Iterable[PolicyDocument], actions: Iterable[str],
             resources: Iterable[str], *, boundary: Iterable[PolicyDocument] | None = None,
             context: dict[str, list[str]] | None = None) -> list[EvaluationResult]:
    """Evaluate identity ``policies`` (and a permissions ``boundary``) for every action on
    every resource, as SimulatePrincipalPolicy does.

    Returns:
        One :class:`EvaluationResult` per (action, resource), in request order.
    """
    context = {k.lower(): v for k, v in (context or {}).items()}
    policies, bounds = list(policies), None if boundary is None else list(boundary)
    results = []
    for action in actions:
        for resource in resources:
            missing: list[str] = []
            unsupported: list[str] = []
            decision, matched = _decide(policies, action, resource, context, missing,
                                        unsupported)
            boundary_allows = None
            if bounds is not None:
                limit, limit_matched = _decide(bounds, action, resource, context, missing,
                                               unsupported)
                boundary_allows = limit == "allowed"
                if limit == "explicitDeny":
                    decision, matched = "explicitDeny", limit_matched
                elif decision == "allowed" and not boundary_allows:
                    decision = "implicitDeny"
            results.append(EvaluationResult(action, resource, decision, matched,
                                            missing + unsupported, boundary_allows))
    return results


# --------------------------------------------------------------------------- moto


def _managed_document(policy: Any) -> Any:
    version = next((v for v in policy.versions if v.is_default), None)
    return version.document if version is not None else "{}"


def _role_policies(backend: Any, role: Any) -> list[PolicyDocument]:
    documents = [PolicyDocument.parse(name, "role", document)
                 for name, document in role.policies.items()]
    for arn, policy in role.managed_policies.items():
        kind = "aws-managed" if ":aws:policy/" in arn else "user-managed"
        documents.append(PolicyDocument.parse(policy.name, kind, _managed_document(policy)))
    return documents


def install(plane: Any, patch: Callable[[object, str, object], None]) -> None:
    """Control-plane extension: add ``SimulatePrincipalPolicy`` to moto's IAM (for roles)."""
    from moto.core.responses import ActionResult
    from moto.iam.exceptions import InvalidInput, NotFoundException
    from moto.iam.responses import IamResponse

    def simulate_principal_policy(response: Any) -> Any:
        backend = response.backend
        source = str(response._get_param("PolicySourceArn") or "")
        kind, _, path = source.partition(":role/")
        if not path or not kind.startswith("arn:aws:iam::"):
            raise InvalidInput("PolicySourceArn must be the ARN of an IAM role in the local "
                               f"stand-in, not {source!r}.")
        name = path.rsplit("/", 1)[-1]
        try:
            role = backend.get_role(name)
        except NotFoundException:
            raise NotFoundException(f"The role with name {name} cannot be found.") from None
        policies = _role_policies(backend, role)
        policies += [PolicyDocument.parse(f"PolicyInputList.{i + 1}", "none", text)
                     for i, text in enumerate(response._get_param("PolicyInputList") or [])]
        boundary = None
        given = response._get_param("PermissionsBoundaryPolicyInputList")
        if given:
            boundary = [PolicyDocument.parse("PermissionsBoundaryPolicyInputList.1", "none",
                                             given[0])]
        elif role.permissions_boundary_arn:
            managed = backend.get_policy(role.permissions_boundary_arn)
            kind = "aws-managed" if ":aws:policy/" in managed.arn else "user-managed"
            boundary = [PolicyDocument.parse(managed.name, kind, _managed_document(managed))]
        context = {str(entry.get("ContextKeyName")): _listed(entry.get("ContextKeyValues"))
                   for entry in response._get_param("ContextEntries") or []}
        actions = _listed(response._get_param("ActionNames"))
        resources = _listed(response._get_param("ResourceArns")) or ["*"]
        results = evaluate(policies, actions, resources, boundary=boundary, context=context)
        return ActionResult({"EvaluationResults": [r.as_shape() for r in results],
                             "IsTruncated": False})

    patch(IamResponse, "simulate_principal_policy", simulate_principal_policy)
