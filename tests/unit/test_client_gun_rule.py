import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from trustkit.client.notary import NotaryClient
from trustkit.errors import InvalidReferenceError
from trustkit.notary_api import gun_problem


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.text(max_size=300),
        st.lists(st.sampled_from(["a", "/", "_trust", ".", " ", "*", "é" * 100]), max_size=8).map("".join),
    )
)
def test_the_client_refuses_exactly_what_the_gun_rule_refuses(gun: str) -> None:
    http = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200)))
    try:
        NotaryClient("https://notary.example.com", gun, http)
    except InvalidReferenceError:
        assert gun_problem(gun) is not None
    else:
        assert gun_problem(gun) is None
