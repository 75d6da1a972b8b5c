"""DF(p): a project's default occurrence filters (fact sheet §3), written once as an SQL predicate.

Every cached count that Antenna filters (capture, event and deployment detection counts; event and
deployment occurrence and taxa counts) goes through this one function, in the rules and in their repairs,
so check and repair cannot disagree.

DF(p) is the AND of:
1. ``determination_score >= p.default_filters_score_threshold``.  A NULL score never passes, and neither
   does a missing occurrence (a detection without an occurrence joins to an all-NULL row);
2. when p has include taxa: the determination is one of them, or one of them is among its ancestors
   (``parents_json @> '[{"id": t}]'``);
3. when p has exclude taxa: the determination is none of them and descends from none of them.  A NULL
   determination is not excluded (it cannot match), but it already failed 2 when p has include taxa.

A NULL project means no filter at all: every occurrence, and every detection without one, passes.
Each row is filtered with *its own* project (the project id is an SQL expression on the caller's row).
"""

from __future__ import annotations


def _is_or_descends_from(taxon: str, ancestor_id: str) -> str:
    ancestor = f"jsonb_build_array(jsonb_build_object('id', {ancestor_id}))"
    return f"({taxon}.id = {ancestor_id} OR {taxon}.parents_json @> {ancestor})"


def passes_default_filters(occurrence: str, project_id: str) -> str:
    """An SQL boolean: the occurrence row ``occurrence`` (an alias of main_occurrence, possibly the NULL row
    of a LEFT JOIN) passes DF of the project whose id is the SQL expression ``project_id``.

    The aliases used inside (``df_project``, ``df_include``, ``df_exclude``, ``df_taxon``) never shadow the
    caller's.  No parameters: the fragment can go into any statement as is.
    """
    include = "main_project_default_filters_include_taxa"
    exclude = "main_project_default_filters_exclude_taxa"
    return f"""({project_id} IS NULL OR (
        {occurrence}.determination_score >= (
            SELECT df_project.default_filters_score_threshold FROM main_project df_project
             WHERE df_project.id = {project_id})
        AND (NOT EXISTS (SELECT 1 FROM {include} df_include WHERE df_include.project_id = {project_id})
             OR EXISTS (SELECT 1 FROM {include} df_include
                          JOIN main_taxon df_taxon ON df_taxon.id = {occurrence}.determination_id
                         WHERE df_include.project_id = {project_id}
                           AND {_is_or_descends_from("df_taxon", "df_include.taxon_id")}))
        AND NOT EXISTS (SELECT 1 FROM {exclude} df_exclude
                          JOIN main_taxon df_taxon ON df_taxon.id = {occurrence}.determination_id
                         WHERE df_exclude.project_id = {project_id}
                           AND {_is_or_descends_from("df_taxon", "df_exclude.taxon_id")})
    ))"""


# The same DF(p) for a statement that tests many rows against few projects: what depends on the project alone
# (its threshold, whether it has include and exclude taxa) is read once per project, from ``PROJECT_FILTERS``
# joined to the row, rather than by three subqueries per row.  A row tests the taxa lists only when its
# project has one.  Used by the shared scans (antenna_invariants.shared), which recount every detection.
PROJECT_FILTERS = """
    SELECT df_project.id, df_project.default_filters_score_threshold AS threshold,
           EXISTS (SELECT 1 FROM main_project_default_filters_include_taxa df_include
                    WHERE df_include.project_id = df_project.id) AS has_include,
           EXISTS (SELECT 1 FROM main_project_default_filters_exclude_taxa df_exclude
                    WHERE df_exclude.project_id = df_project.id) AS has_exclude
      FROM main_project df_project"""


def passes_project_filters(occurrence: str, project_id: str, filters: str) -> str:
    """``passes_default_filters(occurrence, project_id)`` where ``filters`` is the alias of the project's row of
    ``PROJECT_FILTERS`` (LEFT JOINed on ``project_id``: no row, no project, never passes, as a missing
    threshold never does)."""
    include = "main_project_default_filters_include_taxa"
    exclude = "main_project_default_filters_exclude_taxa"
    return f"""({project_id} IS NULL OR (
        {occurrence}.determination_score >= {filters}.threshold
        AND (NOT {filters}.has_include
             OR EXISTS (SELECT 1 FROM {include} df_include
                          JOIN main_taxon df_taxon ON df_taxon.id = {occurrence}.determination_id
                         WHERE df_include.project_id = {project_id}
                           AND {_is_or_descends_from("df_taxon", "df_include.taxon_id")}))
        AND (NOT {filters}.has_exclude
             OR NOT EXISTS (SELECT 1 FROM {exclude} df_exclude
                              JOIN main_taxon df_taxon ON df_taxon.id = {occurrence}.determination_id
                             WHERE df_exclude.project_id = {project_id}
                               AND {_is_or_descends_from("df_taxon", "df_exclude.taxon_id")}))
    ))"""
