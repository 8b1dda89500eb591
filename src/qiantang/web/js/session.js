// The signed-in caller (GET /me), shared by the pages.
import { api, token } from "./api.js";

export const session = { me: null };

export async function whoAmI() {
  if (!token()) {
    session.me = null;
    return null;
  }
  if (!session.me) {
    session.me = await api.get("/me");
  }
  return session.me;
}

export function forget() {
  session.me = null;
}

// Where a caller starts: operators and analysts on the overview, enterprise users at their
// (first) enterprise.
export function homeRoute(me) {
  if (!me || me.platform_roles.length > 0 || me.enterprise_roles.length === 0) {
    return "/overview";
  }
  return `/enterprises/${me.enterprise_roles[0].enterprise_id}`;
}
