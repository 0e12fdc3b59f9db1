"""One renderer per report section. Each is `render(ctx) -> Section | None`: None when the
analysis holds nothing for it. The order of SECTIONS is the order in the report; a new result
gets a module here and one line in SECTIONS."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Section:
    id: str  # HTML id, also the fragment the contents list links to
    title: str
    body: str  # markup, every document string escaped


def all_sections():
    from . import (
        agreement,
        attention,
        attributions,
        document_importance,
        faithfulness,
        heads,
        interventions,
        propagation,
        provenance,
        record,
        text,
        verdict,
        windows,
    )

    return [provenance.render, windows.render, text.render, attention.render, propagation.render_rollout,
            propagation.render_flow, heads.render, attributions.render, document_importance.render,
            agreement.render,
            faithfulness.render, interventions.render, verdict.render, provenance.render_settings,
            record.render]
