"use strict";
PW.start(async () => {
  PW.status(PW.t("status.loading"));
  const enterprises = await PW.api("/api/v1/enterprises");
  const body = document.querySelector("#enterprises tbody");
  for (const e of enterprises) {
    const links = PW.element("td", {},
      PW.element("a", { href: `/console/floor?enterprise=${e.id}` }, PW.t("page.floor.title")),
      " · ",
      PW.element("a", { href: `/console/indicators?enterprise=${e.id}` },
        PW.t("page.indicators.title")));
    body.append(PW.element("tr", { "data-enterprise": e.code },
      PW.element("td", { text: e.code }), PW.element("td", { text: e.name }),
      PW.element("td", { text: e.region || "—" }), links));
  }
  PW.status(enterprises.length ? "" : PW.t("home.none"));
});
